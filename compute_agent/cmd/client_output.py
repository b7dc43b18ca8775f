"""What ``compute-agent-client`` prints: JSON or tables, errors, and the
progress of a request while ``--wait`` follows it.

Progress is a real progress bar (rich) fed by the instance's ``progress``
and task_state when the stream it goes to is a terminal, and one plain line
per change otherwise (a log, a pipe). Under ``--json`` it goes to stderr so
that stdout stays one JSON document.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn

# The client's exit statuses (client.py's docstring says when each is given).
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3

COLUMNS = ("uuid", "name", "host", "vm_state", "task_state", "power", "progress")
POWER_NAMES = {0: "nostate", 1: "running", 3: "paused", 4: "shutdown", 6: "crashed",
               7: "suspended"}


class Output:
    """``force_terminal`` overrides the terminal check (tests)."""

    def __init__(self, as_json: bool, out: TextIO, err: TextIO,
                 force_terminal: bool | None = None):
        self.as_json = as_json
        self.out = out
        self.err = err
        self.force_terminal = force_terminal

    def data(self, value: Any, table: Callable[[Any], str] | None = None) -> None:
        if self.as_json or table is None:
            print(json.dumps(value, indent=2, sort_keys=True), file=self.out)
        else:
            print(table(value), file=self.out)

    @property
    def progress_stream(self) -> TextIO:
        # Progress goes to stderr under --json so stdout stays one document.
        return self.err if self.as_json else self.out

    def progress(self, line: str) -> None:
        print(line, file=self.progress_stream, flush=True)

    def error(self, exc: Any) -> None:
        if self.as_json:
            print(json.dumps({"error": exc.to_dict()}), file=self.out)
        print(f"ERROR {exc.code} {exc.params}: {exc.message}", file=self.err)

    def follower(self, request: str) -> InstanceProgress:
        console = Console(file=self.progress_stream, force_terminal=self.force_terminal)
        return InstanceProgress(self, request, console if console.is_terminal else None)


def state_line(inst: dict[str, Any]) -> str:
    return (f"{inst['uuid']}  {inst['vm_state']:9} {inst['task_state'] or '-':17} "
            f"{POWER_NAMES.get(inst['power_state'], '?'):9} {inst['progress']:3}%")


class InstanceProgress:
    """Follows one instance while a request runs: ``show(instance)`` on
    every read; a bar on a terminal (``console``), plain lines otherwise.
    Use as a context manager."""

    def __init__(self, output: Output, request: str, console: Console | None):
        self.output = output
        self.request = request
        self.console = console
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._last: tuple[Any, ...] | None = None

    def __enter__(self) -> InstanceProgress:
        if self.console is not None:
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TaskProgressColumn(), TextColumn("{task.fields[state]}"),
                                 console=self.console, transient=False)
            self._bar.start()
            self._task = self._bar.add_task(self.request, total=100, state="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()

    def show(self, inst: dict[str, Any]) -> None:
        shown = (inst["vm_state"], inst["task_state"], inst["power_state"], inst["progress"])
        if shown == self._last:
            return
        self._last = shown
        if self._bar is None or self._task is None:
            self.output.progress(state_line(inst))
            return
        state = f"{inst['task_state'] or inst['vm_state']} " \
                f"({POWER_NAMES.get(inst['power_state'], '?')})"
        done = inst["task_state"] is None and inst["vm_state"] != "building"
        self._bar.update(self._task, completed=100 if done else int(inst["progress"] or 0),
                         state=state)

    def note(self, line: str) -> None:
        if self._bar is not None:
            self._bar.console.print(line)
        else:
            self.output.progress(line)


def _row(inst: dict[str, Any]) -> list[str]:
    return [inst["uuid"], inst["name"], inst.get("host") or "-", inst["vm_state"],
            inst["task_state"] or "-", POWER_NAMES.get(inst["power_state"], "?"),
            f"{inst['progress']}%"]


def format_table(header: Sequence[str], rows: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def instances_table(instances: list[dict[str, Any]]) -> str:
    return format_table(COLUMNS, [_row(i) for i in instances])


def instance_details(inst: dict[str, Any]) -> str:
    lines = []
    for key in ("uuid", "name", "host", "vm_state", "task_state", "power_state", "progress",
                "created_at", "updated_at", "launched_at"):
        value = inst.get(key)
        if key == "power_state":
            value = f"{value} ({POWER_NAMES.get(value, '?')})"
        lines.append(f"{key:12} {value if value is not None else '-'}")
    lines.append(f"{'flavor':12} {json.dumps(inst.get('flavor'), sort_keys=True)}")
    lines.append(f"{'image':12} {json.dumps(inst.get('image'), sort_keys=True)}")
    fault = inst.get("fault")
    lines.append(f"{'fault':12} " + (f"{fault['code']} {fault['params']}: {fault['message']}"
                                     if fault else "-"))
    return "\n".join(lines)


def actions_table(actions: list[dict[str, Any]]) -> str:
    header = ("request_id", "action", "start", "finish", "result", "fault / events")
    rows = []
    for a in actions:
        events = ", ".join(f"{e['event']}:{e['result'] or 'running'}" for e in a["events"])
        rows.append([a["request_id"], a["action"], a["start_time"] or "-",
                     a["finish_time"] or "-", a["result"] or "running",
                     a["fault"] or events or "-"])
    return format_table(header, rows)


def hosts_table(hosts: list[dict[str, Any]]) -> str:
    header = ("host", "state", "vcpus", "memory_mb", "free_mb", "disk_gb", "vms", "heartbeat")
    rows = [[h["host"], "up" if h["alive"] else "down",
             f"{h.get('vcpus_used', 0)}/{h.get('vcpus', 0)}",
             f"{h.get('memory_mb_used', 0)}/{h.get('memory_mb', 0)}",
             str(h.get("free_memory_mb", 0)),
             f"{h.get('local_gb_used', 0)}/{h.get('local_gb', 0)}",
             str(h.get("running_vms", 0)), h.get("heartbeat") or "-"] for h in hosts]
    return format_table(header, rows)
