"""XenAPI errors as the simulator raises them: a code and string params."""

from __future__ import annotations

import re
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


# xapi relays an SM driver's error N as SR_BACKEND_FAILURE_N with the
# parameters of SR_BACKEND_FAILURE (status, stdout, stderr).
SM_FAILURE = re.compile(r"SR_BACKEND_FAILURE_[0-9]+")


def declared_param_counts(code: str, model_errors: dict[str, list[str]]) -> set[int]:
    """The parameter counts an error ``code`` may carry on the wire: the
    model's, xapi's own where it raises more, SR_BACKEND_FAILURE's for the
    SM family. Empty: xapi never answers ``code``."""
    counts: set[int] = set()
    if code in model_errors:
        counts.add(len(model_errors[code]))
    elif SM_FAILURE.fullmatch(code) and "SR_BACKEND_FAILURE" in model_errors:
        counts.add(len(model_errors["SR_BACKEND_FAILURE"]))
    if code in PARAMS_BEYOND_MODEL:
        counts.add(len(PARAMS_BEYOND_MODEL[code]))
    return counts
