"""Dom0 errors are scrubbed and bounded before they are stored."""

from compute_agent.driver.xenapi import errors


def test_stored_errors_are_scrubbed_and_bounded():
    stored = errors.scrub_for_storage(
        ["SR_BACKEND_FAILURE", "login hunter2 failed", "x" * 100_000] + ["p"] * 40,
        ["hunter2"])
    assert stored[1] == "login <session> failed"
    assert len(stored) == errors.MAX_STORED_PARAMS
    assert len(stored[2]) == errors.MAX_STORED_PARAM
