"""Per message: the error codes the simulator can raise against the
``errors`` the data model declares for that message.

xapi's dispatcher and database layer can answer any message with a few
codes the model never lists per message (GENERIC below); those aside,
every other code a handler can raise (read from the source, see
error_reach) should be one the model declares for that message, and every
declared code one the handler can raise. The differences are listed (with
-s, and counted in the run's summary); the test fails if a handler can
raise a code xapi does not have at all, or if the share of messages that
differ grows past a bound set from the last measurement."""

from __future__ import annotations

import json

import pytest

from tests.conformance.error_reach import SM_FAMILY, ErrorReach
from tests.conformance.oracle import shared_file

# What any message may answer, whatever its declared errors: xapi's
# unmarshalling, session check, database lookups (and the duplicate key of
# an implicit add_to_<map>), pool forwarding, task cancellation, its own
# failures.
GENERIC = {"SESSION_INVALID", "HANDLE_INVALID", "FIELD_TYPE_ERROR", "UUID_INVALID",
           "MESSAGE_PARAMETER_COUNT_MISMATCH", "MESSAGE_METHOD_UNKNOWN", "HOST_IS_SLAVE",
           "TASK_CANCELLED", "INTERNAL_ERROR", "NOT_IMPLEMENTED", "MAP_DUPLICATE_KEY"}
# Share of implemented messages whose codes differ: 147 of 1542 (9.5%) when
# measured; the bound leaves room for the handlers other work adds while
# catching a regression across many messages. Lower it as differences go.
MAX_DIFFERING_SHARE = 0.12


@pytest.fixture(scope="module")
def declared_errors() -> dict[str, set[str]]:
    raw = json.loads(shared_file("xenapi.json").read_text())
    return {f"{c['name']}.{m['name']}": {e["name"] for e in m["errors"]}
            for c in raw for m in c["messages"]}


def test_error_codes_per_message_against_the_data_model(sim, oracle, declared_errors,
                                                        summary):
    reach = ErrorReach()
    implemented = [m.wire for m in oracle.all_messages() if sim.dispatcher.handler_for(m.wire)]
    assert len(implemented) > 1000
    unknown: list[str] = []
    raised_undeclared: dict[str, list[str]] = {}
    declared_unraised: dict[str, list[str]] = {}
    for wire in implemented:
        codes = reach.codes(sim.dispatcher.handler_for(wire))
        for code in codes:
            if code not in oracle.errors and code != SM_FAMILY:
                unknown.append(f"{wire}: {code}")
        declared = declared_errors.get(wire, set())
        extra = sorted(c for c in codes - declared - GENERIC
                       if not (c == SM_FAMILY and any(d.startswith(SM_FAMILY)
                                                      for d in declared)))
        missing = sorted(declared - codes - GENERIC)
        if extra:
            raised_undeclared[wire] = extra
        if missing:
            declared_unraised[wire] = missing
    differing = set(raised_undeclared) | set(declared_unraised)
    line = (f"xapisim error fidelity: {len(differing)} of {len(implemented)} implemented "
            f"messages differ from the data model's errors "
            f"({sum(map(len, raised_undeclared.values()))} codes raised but not declared in "
            f"{len(raised_undeclared)} messages, {sum(map(len, declared_unraised.values()))} "
            f"declared but never raised in {len(declared_unraised)})")
    print(line)
    for wire in sorted(differing):
        print(f"  {wire}: raises undeclared {raised_undeclared.get(wire, [])}; "
              f"never raises declared {declared_unraised.get(wire, [])}")
    summary.append(line)
    assert not unknown, "codes xapi does not have:\n" + "\n".join(unknown)
    assert len(differing) <= MAX_DIFFERING_SHARE * len(implemented), line


def test_the_reach_follows_calls_and_callbacks(sim):
    """Guards the source reading: VM.start reaches the power-state check
    through vm_operation's callback, and VM.provision its own literals."""
    reach = ErrorReach()
    start = reach.codes(sim.dispatcher.handler_for("VM.start"))
    assert {"VM_BAD_POWER_STATE", "OTHER_OPERATION_IN_PROGRESS"} <= start
    assert "DEFAULT_SR_NOT_FOUND" in reach.codes(sim.dispatcher.handler_for("VM.provision"))
    assert SM_FAMILY in reach.codes(sim.dispatcher.handler_for("SR.probe"))
