"""OneLineFilter: no value can forge a log line or flood the log."""

from __future__ import annotations

import io
import logging

from compute_agent.process.log_setup import MAX_MESSAGE, OneLineFilter


def emit(*args, exc=False):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(OneLineFilter())
    logger = logging.getLogger("test-one-line")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        if exc:
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception(*args)
        else:
            logger.warning(*args)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_line_breaks_and_controls_in_arguments_are_escaped():
    out = emit("Refused %s", "x\n2026-11-30 INFO forged\r\x1b[31m\ud800")
    assert out.count("\n") == 1
    assert "\\n2026-11-30 INFO forged\\n\\x1b[31m\\xd800" in out


def test_huge_messages_are_cut():
    out = emit("%s", "y" * (MAX_MESSAGE * 4))
    assert len(out) < MAX_MESSAGE + 100 and "more characters" in out


def test_tracebacks_keep_their_lines_and_plain_messages_are_untouched():
    out = emit("plain %d", 3, exc=True)
    assert out.startswith("plain 3\nTraceback")


def test_a_bad_format_string_does_not_lose_the_record():
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "only %s %s", ("one",), None)
    assert OneLineFilter().filter(record)
    assert "only %s %s" in record.getMessage() and "one" in record.getMessage()


def test_undecodable_message_tracebacks_become_one_warning():
    from compute_agent.process.log_setup import BadMessageFilter

    try:
        raise ValueError("Expecting value: line 1\nsecond line")
    except ValueError:
        import sys

        record = logging.LogRecord(BadMessageFilter.LOGGER, logging.ERROR, __file__, 1,
                                   "Failed to process message ... skipping it.", (),
                                   sys.exc_info())
    assert BadMessageFilter().filter(record)
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage() == ("Skipped an undecodable RPC message: ValueError: "
                                   "Expecting value: line 1")
