"""XenAPI errors as the simulator raises them: a code and string params."""

from __future__ import annotations

from typing import Any


class XenAPIError(Exception):
    """Raised anywhere in the simulator; the RPC layer turns it into
    ``{"Status": "Failure", "ErrorDescription": [code, *params]}``."""

    def __init__(self, code: str, *params: Any):
        self.code = code
        # exact str: a str subclass (store.XDateTime from a decoded call)
        # would not marshal into the XML-RPC failure envelope
        self.params = [p if type(p) is str else _to_str(p) for p in params]
        super().__init__(code, *self.params)

    @property
    def description(self) -> list[str]:
        return [self.code, *self.params]


def _to_str(p: Any) -> str:
    if isinstance(p, bool):
        return "true" if p else "false"
    return str(p)
