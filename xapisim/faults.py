"""Fault injection and timing: what the control API configures and the
dispatcher consults on every call.

- latency: seconds added before a message runs (per message or ``*``);
- duration: how long the work of a message takes (the task's run time),
  per message or default;
- fail: the next N calls of a message fail with a given XenAPI error;
- drop / hang: the next N calls of a message lose their connection, or
  hang (for ``hang_seconds``) before any answer is written.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from xapisim.errors import XenAPIError


class DropConnection(Exception):
    """The HTTP layer closes the socket without answering."""


class HangConnection(Exception):
    """The HTTP layer holds the socket silent for ``seconds`` then closes it."""

    def __init__(self, seconds: float):
        super().__init__(seconds)
        self.seconds = seconds


@dataclass
class _Rule:
    count: int
    error: list[str] = field(default_factory=list)
    kind: str = "fail"  # fail | drop | hang
    seconds: float = 0.0


class Faults:
    def __init__(self, task_duration: float = 0.0):
        self.lock = threading.Lock()
        self.default_duration = task_duration
        self.durations: dict[str, float] = {}
        self.latencies: dict[str, float] = {}
        self.rules: dict[str, list[_Rule]] = {}
        self.time_scale = 1.0

    def duration(self, method: str) -> float:
        with self.lock:
            base = self.durations.get(method, self.default_duration)
            return base * self.time_scale

    def latency(self, method: str) -> float:
        with self.lock:
            return self.latencies.get(method, self.latencies.get("*", 0.0)) * self.time_scale

    def set_duration(self, method: str | None, seconds: float) -> None:
        with self.lock:
            if method in (None, "", "*"):
                self.default_duration = seconds
            else:
                self.durations[method] = seconds

    def set_latency(self, method: str, seconds: float) -> None:
        with self.lock:
            self.latencies[method or "*"] = seconds

    def add_rule(self, method: str, kind: str, count: int, error: list[str] | None = None,
                 seconds: float = 0.0) -> None:
        if count <= 0:
            return
        with self.lock:
            self.rules.setdefault(method or "*", []).append(
                _Rule(count, list(error or []), kind, seconds)
            )

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()
            self.latencies.clear()
            self.durations.clear()
            self.time_scale = 1.0

    def take(self, method: str, kinds: tuple[str, ...] = ("fail", "drop", "hang"),
             wildcard: bool = True) -> _Rule | None:
        """Consume one matching rule of one of ``kinds`` for this call."""
        with self.lock:
            for key in (method, "*") if wildcard else (method,):
                rules = self.rules.get(key)
                if not rules:
                    continue
                for i, rule in enumerate(rules):
                    if rule.kind not in kinds:
                        continue
                    rule.count -= 1
                    if rule.count <= 0:
                        rules.pop(i)
                    return rule
        return None

    def before_call(self, method: str) -> None:
        """Raise the injected failure for this call, if one is armed."""
        rule = self.take(method)
        if rule is None:
            return
        if rule.kind == "drop":
            raise DropConnection()
        if rule.kind == "hang":
            raise HangConnection(rule.seconds)
        raise _injected(rule)

    def before_task(self, method: str) -> None:
        """Inside an Async task: a ``fail`` rule armed for the plain message
        name fails the task (its error_info), as a real failure would."""
        rule = self.take(method, kinds=("fail",), wildcard=False)
        if rule is not None:
            raise _injected(rule)


def _injected(rule: _Rule) -> XenAPIError:
    code, *params = rule.error or ["INTERNAL_ERROR", "injected fault"]
    return XenAPIError(code, *params)
