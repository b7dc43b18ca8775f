"""Secrets stay out of the simulator's logs however it is started: here
in-process (as tests, the demo and the benchmarks start it), with the
records caught by a handler on the root logger, not the CLI's."""

from __future__ import annotations

import json
import logging
import sys
import urllib.request
from collections.abc import Iterator

import pytest
import XenAPI

from tests.functional.harness import running_simulator
from xapisim import log_redaction

PASSWORD = "hunter22-secret"


class Catch(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def caught() -> Iterator[Catch]:
    catch = Catch()
    root, xlog = logging.getLogger(), logging.getLogger("xapisim")
    level = xlog.level
    root.addHandler(catch)
    xlog.setLevel(logging.DEBUG)
    try:
        yield catch
    finally:
        root.removeHandler(catch)
        xlog.setLevel(level)


def _post(url: str, doc: dict) -> None:
    req = urllib.request.Request(url, json.dumps(doc).encode(),
                                 {"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()


def test_in_process_logs_hide_session_refs_and_passwords(caught):
    with running_simulator(users={"root": PASSWORD}) as sim:
        s = XenAPI.Session(sim.url)
        s.xenapi.login_with_password("root", PASSWORD, "2.0", "redaction")
        ref = s._session
        # a URL carrying the session (logged by the HTTP layer at debug)
        urllib.request.urlopen(f"{sim.url}/rrd_updates?start=-10&session_id={ref}",
                               timeout=10).read()
        # request bodies the control API logs, with both secrets in them
        _post(f"{sim.url}/_sim/latency", {"method": "*", "seconds": 0,
                                          "note": f"for {ref} with {PASSWORD}",
                                          "chappassword": "chap-s3cret"})
        s.xenapi.session.logout()
    text = "\n".join(caught.lines)
    assert "/rrd_updates" in text and "control: latency" in text  # the lines are there
    assert ref not in text
    assert PASSWORD not in text
    assert "chap-s3cret" not in text
    assert text.count(log_redaction.HIDDEN) >= 3


def test_tracebacks_are_redacted_too():
    log_redaction.add_session("OpaqueRef:11111111-2222-3333-4444-555555555555")
    try:
        raise ValueError("bad call on OpaqueRef:11111111-2222-3333-4444-555555555555")
    except ValueError:
        record = logging.LogRecord("xapisim.rpc", logging.ERROR, __file__, 1, "internal error",
                                   None, sys.exc_info())
    finally:
        pass
    assert log_redaction.RedactSecrets().filter(record)
    out = logging.Formatter().format(record)
    assert "11111111-2222" not in out and log_redaction.HIDDEN in out
    log_redaction.forget_session("OpaqueRef:11111111-2222-3333-4444-555555555555")
    # an ordinary object ref is not a secret
    assert log_redaction.redact("VM OpaqueRef:11111111-2222-3333-4444-555555555555") == \
        "VM OpaqueRef:11111111-2222-3333-4444-555555555555"
