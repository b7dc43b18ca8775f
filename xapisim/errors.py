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


# Errors xapi raises with parameters its published data model does not
# declare (the model lists none): code -> the parameters xapi gives.
# SESSION_AUTHENTICATION_FAILED: xapi_session.ml's do_local_auth raises it
# with the user name and PAM's message.
PARAMS_BEYOND_MODEL: dict[str, list[str]] = {
    "SESSION_AUTHENTICATION_FAILED": ["uname", "msg"],
}


def declared_param_counts(code: str, declared: list[str]) -> set[int]:
    """The parameter counts an error ``code`` may carry: the model's, and
    xapi's own where it raises more."""
    counts = {len(declared)}
    if code in PARAMS_BEYOND_MODEL:
        counts.add(len(PARAMS_BEYOND_MODEL[code]))
    return counts
