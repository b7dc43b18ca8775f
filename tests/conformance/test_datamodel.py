"""Conformance of xapisim to the published XenAPI data model.

Walks the shared ``xenapi.json`` (not xapisim's copy) against a simulator
over real HTTP: records carry exactly the declared fields with the declared
wire types on XML-RPC and JSON-RPC, every implemented message takes
exactly its declared parameter count, and every error code the simulator
can raise is declared with the same parameter count. Prints a coverage
line."""

from __future__ import annotations

import ast
import importlib.util
import pathlib
import sys
import time
import xmlrpc.client
from typing import Any

import pytest

from tests.conformance.oracle import (
    REPO,
    SHARED,
    XAPI_PARAMS_BEYOND_MODEL,
    Oracle,
    T,
    TypeChecker,
    zero_xmlrpc,
)
from xapisim import api
from xapisim.dispatch import TRAILING_DEFAULTS

BOGUS_SESSION = "OpaqueRef:00000000-0000-0000-0000-00000000dead"
LOGINS = {"session.login_with_password": (2, 4), "session.slave_local_login_with_password": (2, 2)}


# -- what the simulator implements --------------------------------------------------
def implemented_classes(oracle: Oracle, fresh_tables: dict[str, int]) -> list[str]:
    """Classes with objects in a fresh simulator or with handlers of their own."""
    with_handlers = {name.partition(".")[0] for name in api.HANDLERS}
    return [c for c in oracle.classes if fresh_tables.get(c) or c in with_handlers]


def implemented_messages(oracle: Oracle, sim) -> list:
    return [m for m in oracle.all_messages() if sim.dispatcher.handler_for(m.wire)]


@pytest.fixture(scope="module")
def fresh_tables(sim) -> dict[str, int]:
    # Object counts before any test call: what bootstrap made. Read from
    # the store only to decide what to check; all checks go over HTTP.
    return {c: len(t) for c, t in sim.store.tables.items()}


# -- populate: one object of every class a client can construct ----------------------
def _wait_task(xml, session: str, task: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = xml.ok("task.get_status", session, task)
        if status not in ("pending", "cancelling"):
            return status
        time.sleep(0.01)
    raise AssertionError(f"task {task} still pending")


def _constructor_record(oracle: Oracle, cls: str, existing: dict[str, list[str]]) -> dict:
    rec: dict[str, Any] = {}
    for name, t in oracle.fields[cls].items():
        if oracle.qualifiers[cls][name] not in ("RW", "RO/constructor"):
            continue
        if t.kind == "ref":
            refs = existing.get(t.name) or []
            rec[name] = refs[0] if refs else "OpaqueRef:NULL"
        elif name in ("device", "userdevice"):
            rec[name] = "3"  # VIF/VBD slots: "" is INVALID_DEVICE
        elif t.kind == "string":
            rec[name] = f"conformance {cls}" if name == "name_label" else ""
        else:
            rec[name] = zero_xmlrpc(oracle, t)
    return rec


@pytest.fixture(scope="module")
def populated(sim, xml, session, oracle, fresh_tables) -> dict[str, list[str]]:
    """Create an object of every class whose constructor is implemented,
    from the declared constructor fields, plus finished tasks; return the
    constructor failures (class -> ErrorDescription) for the report."""
    failures: dict[str, list[str]] = {}
    creatable = [
        c for c in oracle.classes
        if "create" in oracle.messages[c] and oracle.messages[c]["create"].implicit
        and sim.dispatcher.handler_for(f"{c}.create")
    ]
    existing = {c: xml.ok(f"{c}.get_all", session) for c in _classes_with(oracle, sim, "get_all")}
    # Classes whose ref targets can already exist go first, so that refs
    # point at real objects (a VBD at a VM and a VDI, ...).
    pending = list(creatable)
    while pending:
        ready = [c for c in pending
                 if not ({t.name for t in oracle.fields[c].values() if t.kind == "ref"} - {c})
                 & set(pending)] or pending[:1]
        for cls in ready:
            env = xml.envelope(f"{cls}.create", session, _constructor_record(oracle, cls, existing))
            if env["Status"] == "Success":
                existing.setdefault(cls, []).append(env["Value"])
            else:
                failures[cls] = env["ErrorDescription"]
            pending.remove(cls)
    # A running VM (cloned from a template) fills the runtime fields and
    # metrics objects a halted one leaves empty.
    templates = xml.ok("VM.get_all_records_where", session, 'field "is_a_template" = "true"')
    for step, args in (("VM.clone", (sorted(templates)[0], "conformance running")),
                       ("VM.provision", ()), ("VM.start", (False, False))):
        if not sim.dispatcher.handler_for(step):
            break
        if step == "VM.clone":
            env = xml.envelope(step, session, *args)
            vm = env.get("Value")
        else:
            env = xml.envelope(step, session, vm, *args)
        if env["Status"] != "Success":
            failures[step] = env["ErrorDescription"]
            break
    # Tasks: one created, one succeeded with a result, one failed.
    xml.ok("task.create", session, "conformance", "a task made by a client")
    for method, args in (("Async.pool.get_all", ()), ("Async.VM.get_record", ("OpaqueRef:NULL",))):
        _wait_task(xml, session, xml.ok(method, session, *args))
    return failures


def test_constructor_failures_are_declared_errors(populated, oracle):
    problems = [f"{cls}.create: {oracle.error_problem(d)}"
                for cls, d in populated.items() if oracle.error_problem(d)]
    assert not problems, "\n".join(problems)


# -- records --------------------------------------------------------------------------
def _classes_with(oracle: Oracle, sim, message: str) -> list[str]:
    """Classes that declare ``message`` and where xapisim implements it."""
    return [c for c in oracle.classes
            if message in oracle.messages[c] and sim.dispatcher.handler_for(f"{c}.{message}")]


def test_xmlrpc_records_have_declared_fields_and_types(populated, xml, session, oracle, sim):
    check = TypeChecker(oracle, "xmlrpc")
    problems: list[str] = []
    all_refs: dict[str, set[str]] = {}
    records: dict[str, dict[str, Any]] = {}
    for cls in _classes_with(oracle, sim, "get_all_records"):
        recs = xml.ok(f"{cls}.get_all_records", session)
        assert isinstance(recs, dict), (cls, recs)
        refs = xml.ok(f"{cls}.get_all", session)
        if sorted(refs) != sorted(recs):
            problems.append(f"{cls}: get_all {sorted(refs)} != get_all_records keys")
        all_refs[cls] = set(recs)
        for ref, rec in recs.items():
            problems += check.value(T("ref", cls), ref, f"{cls} key")
            problems += check.record(cls, rec, f"{cls}.get_all_records[{ref}]")
            records[ref] = rec
            single = xml.ok(f"{cls}.get_record", session, ref)
            problems += check.record(cls, single, f"{cls}.get_record({ref})")
    # A set of refs (VM.VBDs, host.resident_VMs, ...) lists live objects only.
    for cls in all_refs:
        for ref in all_refs[cls]:
            for name, t in oracle.fields[cls].items():
                if t.kind == "set" and t.args[0].kind == "ref" and t.args[0].name in all_refs:
                    dangling = [r for r in records[ref][name]
                                if r not in all_refs[t.args[0].name]]
                    if dangling:
                        problems.append(f"{cls}.{name} of {ref} lists dead refs {dangling}")
    # session declares no get_all_records: check the caller's own session.
    problems += check.record("session", xml.ok("session.get_record", session, session),
                             "session.get_record")
    assert not problems, "\n".join(problems[:60])
    populated_classes = sorted(c for c, refs in all_refs.items() if refs)
    assert {"pool", "host", "VM", "SR", "task"} <= set(populated_classes)


def test_xmlrpc_field_getters_return_declared_types(populated, xml, session, oracle, sim):
    """Every implicit getter, on one object of every class that has one."""
    check = TypeChecker(oracle, "xmlrpc")
    problems: list[str] = []
    calls = 0
    for cls in _classes_with(oracle, sim, "get_all"):
        refs = xml.ok(f"{cls}.get_all", session)
        if not refs:
            continue
        for name, t in oracle.fields[cls].items():
            msg = oracle.messages[cls].get(f"get_{name}")
            if msg is None or not msg.implicit:
                continue
            env = xml.envelope(msg.wire, session, refs[0])
            calls += 1
            if env["Status"] != "Success":
                problems.append(f"{msg.wire}: {env['ErrorDescription']}")
                continue
            problems += check.value(t, env["Value"], msg.wire)
    assert calls > 200
    assert not problems, "\n".join(problems[:60])


def test_jsonrpc_records_have_declared_fields_and_types(populated, jsonrpc, session, oracle,
                                                       sim):
    """The same records over JSON-RPC 2.0 (get_all_records) and 1.0
    (get_record), where ints are numbers and datetimes strings."""
    check = TypeChecker(oracle, "json")
    problems: list[str] = []
    for cls in _classes_with(oracle, sim, "get_all_records"):
        answer = jsonrpc.call(f"{cls}.get_all_records", [session], "2.0")
        assert set(answer) == {"jsonrpc", "result", "id"}, answer
        for ref, rec in answer["result"].items():
            problems += check.record(cls, rec, f"{cls}.get_all_records[{ref}]")
        for ref in list(answer["result"])[:2]:
            one = jsonrpc.call(f"{cls}.get_record", [session, ref], "1.0")
            assert set(one) == {"result", "error", "id"} and one["error"] is None, one
            problems += check.record(cls, one["result"], f"{cls}.get_record({ref})")
    assert not problems, "\n".join(problems[:60])


# -- parameter counts ------------------------------------------------------------------
def _dummies(n: int) -> list[str]:
    return ["conformance"] * n


def _expect_mismatch(desc: list[str], method: str, expected: int, received: int) -> str | None:
    want = ["MESSAGE_PARAMETER_COUNT_MISMATCH", method, str(expected), str(received)]
    return None if desc == want else f"{method} with {received} params: {desc}, want {want}"


def test_implemented_messages_take_exactly_the_declared_parameters(sim, xml, oracle):
    problems: list[str] = []
    messages = implemented_messages(oracle, sim)
    assert messages
    for msg in messages:
        n = len(msg.params)
        if msg.wire in LOGINS:
            lo, hi = LOGINS[msg.wire]
            assert hi == n, f"{msg.wire}: the oracle declares {n} params"
            for count in (lo - 1, hi + 1):
                problems.append(_expect_mismatch(xml.fail(msg.wire, *_dummies(count)),
                                                 msg.wire, n, count))
            desc = xml.fail(msg.wire, "root", "not the password", *_dummies(n - 2))
            if desc != ["SESSION_AUTHENTICATION_FAILED", "root", "Authentication failure"]:
                problems.append(f"{msg.wire} bad password: {desc}")
            continue
        assert msg.takes_session, msg.wire
        lowest = n - len(TRAILING_DEFAULTS.get(msg.wire, []))
        for count in (lowest - 1, n + 1):
            args = [BOGUS_SESSION, *_dummies(count - 1)] if count else []
            problems.append(_expect_mismatch(xml.fail(msg.wire, *args), msg.wire, n, count))
        # The declared count (and fewer where xapi defaults trailing params)
        # passes the count check and reaches the session check (a bogus
        # session, so nothing runs).
        for count in range(lowest, n + 1):
            desc = xml.fail(msg.wire, BOGUS_SESSION, *_dummies(count - 1))
            if desc != ["SESSION_INVALID", BOGUS_SESSION]:
                problems.append(f"{msg.wire} with {count} params and a bogus session: {desc}")
    problems = [p for p in problems if p]
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:60])


def test_defaulted_trailing_parameters_are_real_ones(oracle):
    """xapi lets old clients omit parameters added later with a default;
    the published model has no defaults, so xapisim keeps a table of them.
    Each entry must name a declared message and fewer params than it has."""
    for wire, defaults in TRAILING_DEFAULTS.items():
        cls, _, name = wire.partition(".")
        msg = oracle.messages.get(cls, {}).get(name)
        assert msg is not None, f"{wire} is not a declared message"
        assert 0 < len(defaults) < len(msg.params) - 1, (wire, defaults)


def test_async_messages_take_the_declared_parameters(sim, xml, oracle):
    sample = [m for m in implemented_messages(oracle, sim)
              if m.cls in ("VM", "task", "pool", "host") and m.takes_session][:80]
    problems = []
    for msg in sample:
        n = len(msg.params)
        wire = f"Async.{msg.wire}"
        problems.append(_expect_mismatch(
            xml.fail(wire, BOGUS_SESSION, *_dummies(n)), wire, n, n + 1))
        desc = xml.fail(wire, BOGUS_SESSION, *_dummies(n - 1))
        if desc != ["SESSION_INVALID", BOGUS_SESSION]:
            problems.append(f"{wire}: {desc}")
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("version", ["2.0", "1.0"])
def test_jsonrpc_parameter_counts_and_error_shapes(sim, jsonrpc, oracle, version):
    sample = [m for m in implemented_messages(oracle, sim)
              if m.cls in ("VM", "task", "event", "session", "pool") and m.takes_session]
    assert len(sample) > 50
    problems = []
    for msg in sample:
        n = len(msg.params)
        answer = jsonrpc.call(msg.wire, [BOGUS_SESSION, *_dummies(n)], version)
        want = ["MESSAGE_PARAMETER_COUNT_MISMATCH", msg.wire, str(n), str(n + 1)]
        if version == "2.0":
            err = answer.get("error")
            ok = (set(answer) == {"jsonrpc", "error", "id"} and answer["jsonrpc"] == "2.0"
                  and isinstance(err, dict) and set(err) == {"code", "message", "data"}
                  and isinstance(err["code"], int) and err["code"] != 0
                  and [err["message"], *err["data"]] == want)
        else:
            ok = (set(answer) == {"result", "error", "id"} and answer["result"] is None
                  and answer["error"] == want)
        if not ok:
            problems.append(f"{msg.wire}: {answer}")
    assert not problems, "\n".join(problems[:40])


def test_unknown_messages_and_classes(xml, session):
    for method in ("VM.no_such_message", "no_such_class.get_all", "VM", "Async.VM.nope",
                   "get_all"):
        desc = xml.fail(method, session)
        assert desc == ["MESSAGE_METHOD_UNKNOWN", method], desc


# -- error codes -----------------------------------------------------------------------
def raised_errors(root: pathlib.Path) -> tuple[list[tuple[str, int | None, str]], list[str]]:
    """Every ``XenAPIError("CODE", ...)`` in the source: (code, param count
    or None when starred, where), and the sites whose code is not a literal."""
    found, dynamic = [], []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(
                f, ast.Attribute) else None
            if name != "XenAPIError" or not node.args:
                continue
            where = f"{path.relative_to(root.parent)}:{node.lineno}"
            first = node.args[0]
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                dynamic.append(where)
                continue
            starred = any(isinstance(a, ast.Starred) for a in node.args[1:])
            found.append((first.value, None if starred else len(node.args) - 1, where))
    return found, dynamic


def test_every_error_the_simulator_raises_is_declared(oracle):
    found, dynamic = raised_errors(REPO / "xapisim")
    assert len(found) > 20, found
    problems = []
    for code, count, where in found:
        if code not in oracle.errors:
            problems.append(f"{where}: {code} is not declared in xapi-errors.json")
        elif count is not None and count != len(oracle.errors[code]) and count != len(
                XAPI_PARAMS_BEYOND_MODEL.get(code, oracle.errors[code])):
            problems.append(f"{where}: {code} raised with {count} params, declared "
                            f"{len(oracle.errors[code])} {oracle.errors[code]}")
    print(f"error sites: {len(found)} literal, {len(dynamic)} computed codes: {dynamic}")
    assert not problems, "\n".join(problems)


def test_errors_on_the_wire_are_declared(xml, session, oracle):
    """Failures of a few typical bad calls, checked against the oracle."""
    calls = [
        ("VM.get_record", session, "OpaqueRef:NULL"),
        ("VM.get_by_uuid", session, "not-a-uuid"),
        ("VM.get_all_records_where", session, "field \"x\" =="),
        ("event.from", session, ["nonsense_class"], "", 0.1),
        ("event.from", session, ["vm"], "not a token", 0.1),
        ("event.next", session),
        ("task.cancel", session, "OpaqueRef:NULL"),
        ("VM.set_name_label", session, "OpaqueRef:NULL", "x"),
        ("VM.get_power_state", session, {"not": "a ref"}),
        ("session.get_this_host", BOGUS_SESSION, BOGUS_SESSION),
    ]
    problems = []
    for method, *params in calls:
        desc = xml.fail(method, *params)
        why = oracle.error_problem(desc)
        if why:
            problems.append(f"{method}: {why}")
    assert not problems, "\n".join(problems)


# -- coverage ------------------------------------------------------------------------
def test_coverage_line(sim, oracle, fresh_tables, summary):
    classes = implemented_classes(oracle, fresh_tables)
    declared = oracle.all_messages()
    done = implemented_messages(oracle, sim)
    explicit = [m for m in declared if not m.implicit]
    explicit_done = [m for m in done if not m.implicit]
    line = (f"xapisim coverage: classes {len(classes)}/{len(oracle.classes)}, "
            f"messages implemented {len(done)}/declared {len(declared)}")
    detail = (f"xapisim coverage detail: explicit messages {len(explicit_done)}/{len(explicit)}, "
              f"implicit {len(done) - len(explicit_done)}/{len(declared) - len(explicit)}; "
              f"classes: {' '.join(classes)}")
    print(line)
    print(detail)
    summary.extend([line, detail])
    assert len(oracle.classes) == 67
    assert {"session", "task", "event", "pool", "host", "VM"} <= set(classes)


# -- xapisim's trimmed copy of the data model -----------------------------------------
def test_datamodel_copy_matches_shared_json(tmp_path, monkeypatch, oracle):
    """xapisim/data/*.json is what tools/gen_datamodel.py makes from the
    shared JSON today (regenerated into a temp dir and compared)."""
    spec = importlib.util.spec_from_file_location("gen_datamodel_under_test",
                                                  REPO / "tools" / "gen_datamodel.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    monkeypatch.setattr(gen, "OUT", tmp_path)
    monkeypatch.setattr(sys, "argv", ["gen_datamodel.py", str(SHARED)])
    gen.main()
    for name in ("datamodel.json", "errors.json"):
        fresh = (tmp_path / name).read_bytes()
        shipped = (REPO / "xapisim" / "data" / name).read_bytes()
        assert fresh == shipped, f"xapisim/data/{name} is stale: run tools/gen_datamodel.py"


def test_xmlrpc_envelope_is_xapis(sim):
    """A success and a failure are both methodResponses with a struct, never
    an XML-RPC fault."""
    proxy = xmlrpc.client.ServerProxy(sim.url)
    ok = proxy.session.login_with_password("root", "password", "2.0", "conformance")
    assert set(ok) == {"Status", "Value"} and ok["Status"] == "Success"
    bad = proxy.VM.get_all("OpaqueRef:NULL")
    assert bad == {"Status": "Failure", "ErrorDescription": ["SESSION_INVALID", "OpaqueRef:NULL"]}
    proxy.session.logout(ok["Value"])
