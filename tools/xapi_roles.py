#!/usr/bin/env python3
"""The least XenAPI RBAC role that can make every call the agent's driver makes.

    python tools/xapi_roles.py                     # report, from tools/xapi_roles.json
    python tools/xapi_roles.py --update [XENAPI]   # re-read the roles from the data model

The driver names its XenAPI calls as string literals ("VM.create",
"Async.VM.start", ...). The roles allowed to make each message are in the
published data model (``messages[].roles`` of xenapi.json, by default
../shared/xapi/xenapi.json); ``--update`` copies them for every message into
tools/xapi_roles.json, which the repository ships and the tests use
(tests/unit/test_xapi_roles.py), so docs/install.md cannot promise a role that
lacks a permission the code needs, whatever call the driver adds.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DRIVER = REPO / "compute_agent" / "driver" / "xenapi"
ROLES_FILE = REPO / "tools" / "xapi_roles.json"
DEFAULT_MODEL = REPO.parent / "shared" / "xapi" / "xenapi.json"

# xapi's built-in roles, most to least privileged. ("client-cert" is the role of
# certificate-authenticated pool members, not one an operator assigns.)
ROLES = ["pool-admin", "pool-operator", "vm-power-admin", "vm-admin", "vm-operator", "read-only"]

_CALL = re.compile(r"""["']((?:Async\.)?[A-Za-z_]+\.[A-Za-z_]+)["']""")


def calls_in_sources(paths: Iterable[Path], classes: set[str]) -> set[str]:
    """Every "Class.message" string literal in ``paths`` whose class is a XenAPI class,
    without the Async. prefix (an async call needs the same role as the sync one)."""
    found = set()
    for path in paths:
        for match in _CALL.finditer(path.read_text()):
            name = match.group(1).removeprefix("Async.")
            if name.split(".")[0] in classes:
                found.add(name)
    return found


# Driver modules used only when an option asks for them: their calls raise the
# role only for set-ups that turn them on (docs/install.md says which).
OPTIONAL_SOURCES = {
    "image_dom0.py": "[xenserver] image_handler = dom0",
}


def driver_sources(with_optional: bool = False) -> list[Path]:
    return sorted(p for p in DRIVER.rglob("*.py")
                  if with_optional or p.name not in OPTIONAL_SOURCES)


def least_role(roles_by_call: dict[str, list[str]], calls: Iterable[str]) -> str:
    """The least privileged built-in role allowed every call."""
    allowed = set(ROLES)
    for call in calls:
        allowed &= set(roles_by_call[call])
    if not allowed:
        raise ValueError("no single built-in role may make all the calls")
    return max(allowed, key=ROLES.index)


def needing(roles_by_call: dict[str, list[str]], calls: Iterable[str], role: str) -> list[str]:
    """The calls the next less privileged role may not make: why ``role`` is needed."""
    index = ROLES.index(role)
    if index + 1 == len(ROLES):
        return []
    weaker = ROLES[index + 1]
    return sorted(c for c in calls if weaker not in roles_by_call[c])


def load_roles() -> dict[str, list[str]]:
    """Every XenAPI message -> the roles allowed to make it."""
    grouped = json.loads(ROLES_FILE.read_text())
    return {call: roles.split() for roles, calls in grouped.items() for call in calls}


def read_model(model_path: Path) -> dict[str, list[str]]:
    model = json.loads(model_path.read_text())
    roles = {
        f"{cls['name']}.{msg['name']}": list(msg.get("roles") or [])
        for cls in model for msg in cls["messages"]
    }
    # The published model omits the filtered readers (get_all_records_where,
    # get_all_where) that xapi generates for every class; like the other
    # generated readers they are open to every role, as get_all_records is.
    for cls in model:
        reader = roles.get(f"{cls['name']}.get_all_records")
        if reader is not None:
            for name in ("get_all_records_where", "get_all_where"):
                roles.setdefault(f"{cls['name']}.{name}", list(reader))
    return roles


def write_roles(roles: dict[str, list[str]]) -> None:
    """Grouped by role set, one message per line: small, diffable, readable."""
    grouped: dict[str, list[str]] = {}
    for call, allowed in roles.items():
        grouped.setdefault(" ".join(allowed), []).append(call)
    parts = []
    for key in sorted(grouped, key=lambda k: (-len(k.split()), k)):
        names = ",\n".join(f"    {json.dumps(c)}" for c in sorted(grouped[key]))
        parts.append(f"  {json.dumps(key)}: [\n{names}\n  ]")
    ROLES_FILE.write_text("{\n" + ",\n".join(parts) + "\n}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", nargs="?", const=DEFAULT_MODEL, type=Path, metavar="XENAPI",
                        help=f"Rewrite {ROLES_FILE.name} from the data model (xenapi.json).")
    args = parser.parse_args(argv)
    if args.update:
        write_roles(read_model(args.update))
    roles = load_roles()
    classes = {name.split(".")[0] for name in roles}
    calls = calls_in_sources(driver_sources(), classes)
    missing = sorted(calls - set(roles))
    if missing:
        print(f"not XenAPI messages: {', '.join(missing)}", file=sys.stderr)
        return 1
    role = least_role(roles, calls)
    print(f"least role: {role} ({len(calls)} XenAPI calls)")
    for call in needing(roles, calls, role):
        print(f"  needs {role}: {call}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
