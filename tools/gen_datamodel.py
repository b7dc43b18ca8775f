"""Regenerate xapisim/data/{datamodel,errors}.json from the XenAPI reference.

The simulator ships a trimmed copy of the published data model (names,
types, qualifiers, defaults, message signatures, enums; no prose) so that
an installed xapisim needs nothing outside its package.

    python tools/gen_datamodel.py [../shared/xapi]
"""

import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent.parent
OUT = HERE / "xapisim" / "data"


def trim_class(cls: dict) -> dict:
    return {
        "name": cls["name"],
        "fields": [
            {k: f[k] for k in ("name", "type", "qualifier", "default") if k in f}
            for f in cls["fields"]
        ],
        "messages": [
            {
                "name": m["name"],
                "params": [{"name": p["name"], "type": p["type"]} for p in m["params"]],
                "result": m["result"][0],
                "implicit": m["implicit"],
                "errors": [e["name"] for e in m["errors"]],
            }
            for m in cls["messages"]
        ],
        "enums": {e["name"]: [v["name"] for v in e["values"]] for e in cls["enums"]},
    }


def main() -> None:
    src = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parent / "shared" / "xapi")
    model = json.loads((src / "xenapi.json").read_text())
    errors = json.loads((src / "xapi-errors.json").read_text())
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "datamodel.json").write_text(
        json.dumps([trim_class(c) for c in model], separators=(",", ":"), sort_keys=True)
    )
    (OUT / "errors.json").write_text(
        json.dumps(
            {code: e["params"] for code, e in errors["errors"].items()},
            separators=(",", ":"),
            sort_keys=True,
        )
    )


if __name__ == "__main__":
    main()
