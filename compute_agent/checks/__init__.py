"""Pre-flight / upgrade checks behind ``compute-agent-status upgrade check``.

Each check looks at one thing the agent needs (its configuration, its
database schema, dom0, the message broker) and returns a :class:`Result`:
a code like nova-status's (0 success, 1 warning, 2 failure) and one line an
operator can act on. Checks never raise and never print secrets.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Code(enum.IntEnum):
    SUCCESS = 0
    WARNING = 1
    FAILURE = 2


@dataclass(frozen=True)
class Result:
    name: str
    code: Code
    detail: str

    @property
    def label(self) -> str:
        return {Code.SUCCESS: "OK", Code.WARNING: "WARNING", Code.FAILURE: "FAILURE"}[self.code]

    def to_dict(self) -> dict[str, object]:
        return {"check": self.name, "result": self.label, "code": int(self.code),
                "detail": self.detail}


def success(name: str, detail: str) -> Result:
    return Result(name, Code.SUCCESS, detail)


def warning(name: str, detail: str) -> Result:
    return Result(name, Code.WARNING, detail)


def failure(name: str, detail: str) -> Result:
    return Result(name, Code.FAILURE, detail)


def overall(results: list[Result]) -> Code:
    return max((r.code for r in results), default=Code.SUCCESS)


def first_line(exc: BaseException) -> str:
    """A one-line reason for an exception (class name when it says nothing)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
