"""Run benchmarks: ``python -m bench`` runs every ``bench/<name>.py`` that
defines ``main()``; ``python -m bench NAME [NAME...]`` runs those only;
``python -m bench --list`` names them. Arguments after ``--`` go to each
benchmark's ``main(argv)``."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback

import bench


def discover() -> list[str]:
    """Names of the modules in bench/ that have a main()."""
    names = []
    for info in pkgutil.iter_modules(bench.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        if callable(getattr(module, "main", None)):
            names.append(info.name)
    return sorted(names)


def run(name: str, argv: list[str]) -> bool:
    module = importlib.import_module(f"bench.{name}")
    print(f"== bench.{name} ==", flush=True)
    start = time.monotonic()
    try:
        status = module.main(argv)
    except Exception:
        traceback.print_exc()
        status = 1
    print(f"== bench.{name}: {time.monotonic() - start:.1f} s"
          f"{'' if not status else f', FAILED ({status})'} ==\n", flush=True)
    return not status


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in args:
        at = args.index("--")
        args, passthrough = args[:at], args[at + 1:]
    available = discover()
    if args == ["--list"]:
        print("\n".join(available))
        return 0
    unknown = [a for a in args if a not in available]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available)}",
              file=sys.stderr)
        return 2
    results = [run(name, passthrough) for name in (args or available)]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
