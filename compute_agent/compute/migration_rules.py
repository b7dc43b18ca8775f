"""Where a live migration left the instance, from what the two sides show.

Pure: the source agent (after a failed task, or in recovery after a crash)
gathers the facts, this decides. The facts:

- ``here``: the VM is in the source pool and on the source host;
- ``adopted``: the destination agent took the VM over (True), said it is
  not on its host (False), or could not be asked (None).

Outcomes: ``MOVED`` (the instance belongs to the destination now; its row
moves there, adopted or, when the destination agent is down, left for that
agent's recovery to adopt), ``STAYED`` (the migration did not happen; the
instance settles on the source) and ``LOST`` (neither side has it: error).
"""

from __future__ import annotations

from dataclasses import dataclass

MOVED = "moved"
STAYED = "stayed"
LOST = "lost"


@dataclass(frozen=True)
class Facts:
    here: bool
    adopted: bool | None


def where(facts: Facts) -> str:
    if facts.adopted:
        return MOVED
    if facts.here:
        return STAYED
    if facts.adopted is None:
        # Gone from the source host (inside the pool it runs elsewhere;
        # across pools xapi deletes the source VM only after success), and
        # the destination agent cannot say: it is there.
        return MOVED
    return LOST
