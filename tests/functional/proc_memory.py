"""What a process tree (the agent's launcher and its worker) costs in memory.

Summing RSS over a forked tree counts every page the worker still shares
copy-on-write with the launcher twice, and every page of a shared library
once per process. The figures here, all from ``/proc/<pid>/smaps_rollup``:

- **PSS** (proportional set size): each page divided by the number of
  processes that map it, anywhere on the machine. Summed over the tree it is
  what the tree really costs; it is the figure for "the agent's processes
  together". Its file-backed part (``Pss_File``: the interpreter, extension
  modules) is shared with any other Python process on the machine, so it
  moves a little with what else runs; the anonymous part (``Pss_Anon``: the
  heap, the objects) is shared within the tree only and does not.
- **USS** (unique set size, ``Private_Clean + Private_Dirty``): what would be
  freed if the process alone went away.
- **RSS**: every page the process maps, shared or not (what ``ps`` and the
  earlier ``rss_mb`` reported); the sum over a tree over-counts.

The tree is read through every thread's ``children`` list: the launcher
(cotyledon) forks its worker from a thread other than its main one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

_FIELDS = {"Rss": "rss", "Pss": "pss", "Pss_Anon": "pss_anon", "Pss_File": "pss_file",
           "Private_Clean": "uss", "Private_Dirty": "uss", "SwapPss": "swap_pss"}


@dataclass
class ProcMemory:
    """One process, in MB."""
    pid: int
    name: str
    rss: float = 0.0
    pss: float = 0.0
    pss_anon: float = 0.0
    pss_file: float = 0.0
    uss: float = 0.0
    swap_pss: float = 0.0


@dataclass
class TreeMemory:
    """A process and its descendants, in MB; sums over ``procs``."""
    procs: list[ProcMemory] = field(default_factory=list)

    def _sum(self, attr: str) -> float:
        return sum(getattr(p, attr) for p in self.procs)

    @property
    def rss(self) -> float:
        return self._sum("rss")

    @property
    def pss(self) -> float:
        return self._sum("pss")

    @property
    def pss_anon(self) -> float:
        return self._sum("pss_anon")

    @property
    def uss(self) -> float:
        return self._sum("uss")

    def line(self) -> str:
        """PSS / USS / RSS sums, then each process's."""
        each = "; ".join(f"{p.name} {p.pss:.0f}/{p.uss:.0f}/{p.rss:.0f}" for p in self.procs)
        return (f"PSS {self.pss:.0f} (anon {self.pss_anon:.0f}), USS {self.uss:.0f}, "
                f"RSS {self.rss:.0f} MB [{each}]")


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants, parents first."""
    order, pending, seen = [], [pid], set()
    while pending:
        p = pending.pop(0)
        if p in seen:
            continue
        seen.add(p)
        order.append(p)
        try:
            for children in sorted(Path(f"/proc/{p}/task").glob("*/children")):
                pending += [int(c) for c in children.read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited between listing and reading
    return order


def _name(pid: int) -> str:
    """A short label: cotyledon's process title when it set one
    ("master process", "ServiceWrapper worker(0)"), else the command name."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return str(pid)
    if "master process" in cmdline:
        return "master"
    if "worker(" in cmdline:
        return "worker"
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return str(pid)


def proc_memory(pid: int) -> ProcMemory | None:
    """One process's figures, None if it is gone."""
    mem = ProcMemory(pid, _name(pid))
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in text.splitlines()[1:]:
        key, _, rest = line.partition(":")
        attr = _FIELDS.get(key)
        if attr and rest.strip():
            setattr(mem, attr, getattr(mem, attr) + int(rest.split()[0]) / 1024)
    return mem


def tree_memory(pid: int) -> TreeMemory:
    """``pid`` and its descendants."""
    return TreeMemory([m for m in map(proc_memory, tree_pids(pid)) if m is not None])


class PeakMemory:
    """Samples a process tree until stopped; keeps the sample with the
    highest PSS sum (``peak``) and the highest RSS sum seen (``peak_rss``)."""

    def __init__(self, pid: int, every: float = 0.2):
        self.pid, self.every = pid, every
        self.peak = TreeMemory()
        self.peak_rss = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sample = tree_memory(self.pid)
            if sample.pss > self.peak.pss:
                self.peak = sample
            self.peak_rss = max(self.peak_rss, sample.rss)
            self._stop.wait(self.every)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
