"""``system.listMethods``, as xapi's generated dispatcher answers it: the
wire names of the messages served, implicit getters, setters and
constructors included, spelt as xapi spells them (``VM.get_record``,
``VM_guest_metrics.get_os_version``). xapi lists each message once under
its synchronous name (gen_server.ml writes ``wire_name ~sync:true``);
clients form ``Async.<name>`` themselves. Any parameters are ignored, no
session is needed, and pool members answer it too."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

LIST_METHODS = "system.listMethods"


def served_messages(messages: Iterable[str], handler_for: Callable[[str], Any],
                    built_in: Iterable[str]) -> list[str]:
    """The wire names among ``messages`` the simulator answers: those with a
    handler, and those the dispatcher serves itself (``built_in``: logins,
    logouts)."""
    built = set(built_in)
    return [m for m in messages if m in built or handler_for(m) is not None]
