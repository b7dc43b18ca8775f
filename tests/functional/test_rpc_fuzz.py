"""Hostile input at a live agent (issue 15): a real ``compute-agent``
process (fake driver) on PostgreSQL, over the machine's RabbitMQ.

Hypothesis drives RPC calls (documented and made-up methods, arguments of
any JSON shape: huge, nested, NaN, control characters, other spellings of
uuids, forged log lines) and raw AMQP messages (not JSON, wrong envelopes,
binary, oversized, deeply nested, bad contexts, calls whose reply queue
does not exist). The budget is fixed (``derandomize``: the same examples
on every run). Afterwards:

- the agent answers ``ping``, also soon after 80 calls whose reply queue
  was gone (each used to hold an executor thread for 60 s);
- every call got a valid answer or a structured error, never an
  INTERNAL_ERROR;
- its processes together grew by less than MEMORY_GROWTH_LIMIT_MB, measured
  as the sum of their PSS (proportional set size: pages the worker shares
  with the launcher counted once, not twice as an RSS sum would; a page the
  worker un-shares counts as growth, as it costs memory);
- nothing unbounded was stored (names, metadata, faults, action records);
- no log line was forged (a line that starts with what an input carried
  after a line break).
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

import kombu
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compute_agent import exceptions
from compute_agent.compute.validation import BOUNDS
from compute_agent.context import new_context
from compute_agent.db.api import Database
from compute_agent.rpc import errors
from tests.functional.db_fixtures import make_migrated_database_url
from tests.functional.harness import RABBIT, AgentProcess, wait_until
from tests.functional.proc_memory import tree_memory
from tests.functional.rpc_client import Rpc

MEMORY_GROWTH_LIMIT_MB = 60
CALL_EXAMPLES = 60
RAW_EXAMPLES = 30
DEAD_REPLY_CALLS = 80
PING_AFTER_DEAD_REPLIES_LIMIT_S = 20.0  # a deadline, not a speed target
FORGED = "2026-01-01 00:00:00.000 1 ERROR forged.by.fuzz [-] FORGED-LINE"

METHODS = ["ping", "build_instance", "start_instance", "stop_instance", "reboot_instance",
           "terminate_instance", "get_instance", "list_instances", "get_host_status",
           "cancel_operation"]
ARGS = ["instance", "instance_uuid", "clean", "reboot_type", "limit", "marker", "x" * 300]
KNOWN_CODES = {"INVALID_INPUT", "INSTANCE_NOT_FOUND", "INSTANCE_BUSY", "INSTANCE_INVALID_STATE",
               "INSTANCE_WRONG_HOST", "NO_SUCH_METHOD", "UNSUPPORTED_VERSION",
               "OPERATION_NOT_SUPPORTED", "INSTANCE_EXISTS"}
# The 1.4 calls (volumes, ports, the guest) and their argument names.
DEVICE_METHODS = {"attach_volume": ("volume_id", "connection_info", "device"),
                  "detach_volume": ("volume_id",), "attach_interface": ("port",),
                  "detach_interface": ("port_id",), "set_admin_password": ("password",),
                  "inject_file": ("path", "contents"), "reset_network": ()}

pytestmark = pytest.mark.timeout(400)

UUID = str(uuidlib.uuid4())
strings = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.sampled_from([UUID, UUID.upper(), "{" + UUID + "}", "urn:uuid:" + UUID,
                     UUID.replace("-", ""), UUID + "\n" + FORGED, "\x00", "a\r\n" + FORGED,
                     "x" * 70_000, "\u202e\u0085" + FORGED]),
)
numbers = st.one_of(st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([math.nan, math.inf, -math.inf, 10**40]))
json_values = st.recursive(
    st.none() | st.booleans() | numbers | strings,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(strings, inner, max_size=6),
    max_leaves=25)
instances = st.fixed_dictionaries(
    {"uuid": strings, "name": strings,
     "flavor": st.dictionaries(st.sampled_from(["vcpus", "memory_mb", "root_gb", "x"]),
                               numbers | strings, max_size=4),
     "image": st.dictionaries(st.sampled_from(["id", "url", "disk_format"]), json_values,
                              max_size=3)},
    optional={"networks": json_values, "metadata": json_values, "extra": json_values,
              "block_device_mapping": json_values, "config_drive": json_values,
              "user_data": json_values, "public_keys": json_values})


class Fuzz:
    def __init__(self, tmp: Path):
        self.db_url, self.drop_db = make_migrated_database_url("postgresql")
        self.rpc = Rpc("ca_fuzz", timeout=20)
        self.host = f"ca-fuzz-{uuidlib.uuid4().hex[:8]}"
        self.rpc.hosts.append(self.host)
        self.agent = AgentProcess(tmp, host=self.host, db_url=self.db_url,
                                  exchange=self.rpc.exchange, topic=self.rpc.topic,
                                  driver="fake")
        self.db = Database(self.db_url)
        self.codes: dict[str, int] = {}
        self.answers = 0

    def call(self, method: str, args: dict[str, Any]) -> None:
        cctxt = self.rpc.api.client.prepare(server=self.host, timeout=20)
        try:
            cctxt.call(new_context(), method, **args)
            self.answers += 1
        except errors.RemoteComputeError as exc:
            err = errors.to_typed(exc)
            self.codes[err.code] = self.codes.get(err.code, 0) + 1
            assert err.code in KNOWN_CODES, (method, err.code, err.params)
        except exceptions.ComputeAgentError as exc:  # to_typed already applied
            self.codes[exc.code] = self.codes.get(exc.code, 0) + 1
            assert exc.code in KNOWN_CODES, (method, exc.code, exc.params)

    def publish(self, body: bytes | str, content_type: str = "application/json",
                headers: dict | None = None) -> None:
        with kombu.Connection(RABBIT.replace("rabbit://", "amqp://")) as conn:
            conn.Producer().publish(
                body, exchange=kombu.Exchange(self.rpc.exchange, type="topic", durable=False),
                routing_key=f"{self.rpc.topic}.{self.host}", content_type=content_type,
                content_encoding="binary" if isinstance(body, bytes) else "utf-8",
                headers=headers or {})

    def envelope(self, inner: Any, reply_q: str | None = None) -> str:
        message = inner if isinstance(inner, str) else json.dumps(inner)
        return json.dumps({"oslo.version": "2.0", "oslo.message": message})


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    f = Fuzz(tmp_path_factory.mktemp("fuzz"))
    f.agent.start()
    f.agent.wait_serving(f.rpc.api)
    f.memory_before = tree_memory(f.agent.proc.pid)
    yield f
    f.agent.kill9()
    f.rpc.close()
    f.db.dispose()
    f.drop_db()


FUZZ = settings(max_examples=CALL_EXAMPLES, derandomize=True, deadline=None,
                suppress_health_check=list(HealthCheck), database=None)


@FUZZ
@given(method=st.sampled_from(METHODS) | strings.filter(lambda s: len(s) < 100),
       args=st.dictionaries(st.sampled_from(ARGS) | strings.filter(
           lambda s: len(s) < 50 and s not in ("ctxt", "self", "method")),
                            json_values, max_size=3))
def test_fuzzed_calls_get_answers_or_structured_errors(fuzz, method, args):
    fuzz.call(method, args)


@settings(FUZZ, max_examples=CALL_EXAMPLES // 2)
@given(method=st.sampled_from(sorted(DEVICE_METHODS)), data=st.data())
def test_fuzzed_device_calls_get_structured_errors(fuzz, method, data):
    """The 1.4 calls with their own argument names, each given any JSON
    value (or left out): never an INTERNAL_ERROR."""
    names = ("instance_uuid", *DEVICE_METHODS[method])
    args = data.draw(st.fixed_dictionaries({}, optional={n: json_values for n in names}))
    fuzz.call(method, args)


@FUZZ
@given(instance=instances)
def test_fuzzed_builds_are_refused_or_built_never_crash(fuzz, instance):
    fuzz.call("build_instance", {"instance": instance})


@settings(max_examples=RAW_EXAMPLES, derandomize=True, deadline=None,
          suppress_health_check=list(HealthCheck), database=None)
@given(kind=st.sampled_from(["bytes", "not-json", "no-envelope", "inner-not-json",
                             "inner-list", "nested", "oversized", "bad-fields", "context"]),
       junk=st.binary(max_size=64), value=json_values)
def test_raw_amqp_messages_never_hurt_the_agent(fuzz, kind, junk, value):
    if kind == "bytes":
        fuzz.publish(junk, content_type="application/octet-stream")
    elif kind == "not-json":
        fuzz.publish("{" + junk.hex())
    elif kind == "no-envelope":
        fuzz.publish(json.dumps({"method": "ping", "args": value}))
    elif kind == "inner-not-json":
        fuzz.publish(fuzz.envelope("{\"method\": " + junk.hex()))
    elif kind == "inner-list":
        fuzz.publish(fuzz.envelope([value]))
    elif kind == "nested":
        fuzz.publish(fuzz.envelope("[" * 100_000 + "]" * 100_000))
    elif kind == "oversized":
        fuzz.publish(fuzz.envelope({"method": "ping", "args": {"x": "y" * 3_000_000}}))
    elif kind == "bad-fields":
        fuzz.publish(fuzz.envelope({"method": value, "args": value, "version": value,
                                    "namespace": value, "_timeout": value}))
    else:
        fuzz.publish(fuzz.envelope({"method": "ping", "args": {}, "_context_request_id":
                                    "req-1\n" + FORGED, "_context_user_id": value,
                                    "_timeout": "x"}))


def test_calls_to_a_gone_reply_queue_do_not_hold_the_agent(fuzz):
    for _ in range(DEAD_REPLY_CALLS):
        fuzz.publish(fuzz.envelope({
            "method": "list_instances", "args": {}, "version": "1.0",
            "_msg_id": uuidlib.uuid4().hex, "_reply_q": "reply_gone_" + uuidlib.uuid4().hex,
            "_timeout": None, "_unique_id": uuidlib.uuid4().hex}))
    started = time.monotonic()
    wait_until(lambda: fuzz.rpc.api.ping(fuzz.host, timeout=5), PING_AFTER_DEAD_REPLIES_LIMIT_S,
               "ping after calls to gone reply queues", 0.1)
    print(f"ping answered {time.monotonic() - started:.1f} s after {DEAD_REPLY_CALLS} calls "
          "whose reply queue was gone")


def test_afterwards_the_agent_is_healthy_and_stored_nothing_unbounded(fuzz):
    assert fuzz.rpc.api.ping(fuzz.host)["host"] == fuzz.host
    assert fuzz.agent.alive
    before, after = fuzz.memory_before, tree_memory(fuzz.agent.proc.pid)
    growth = after.pss - before.pss
    print(f"answers {fuzz.answers}, structured errors {fuzz.codes}; memory before: "
          f"{before.line()}; after: {after.line()}; PSS growth {growth:.1f} MB, "
          f"RSS growth {after.rss - before.rss:.1f} MB")
    assert growth < MEMORY_GROWTH_LIMIT_MB
    assert fuzz.codes.get("INVALID_INPUT", 0) > 0  # the fuzz did reach validation

    name_max = BOUNDS["name"].maximum
    meta_max = BOUNDS["metadata"].maximum * (BOUNDS["metadata.<key>"].maximum
                                             + BOUNDS["metadata.<value>"].maximum + 8)
    for inst in fuzz.db.list_instances(host=fuzz.host, include_deleted=True, internal=True):
        assert len(inst["name"] or "") <= name_max
        assert len(json.dumps(inst["metadata"] or {})) <= meta_max
        assert len(json.dumps(inst["networks"] or [])) <= 64 * 1024
        for fault in fuzz.db.get_instance_faults(inst["uuid"]):
            assert len(json.dumps(fault["params"])) < 2048 and len(fault["message"]) < 2048
        for action in fuzz.db.list_actions(inst["uuid"]):
            assert len(action.get("message") or "") < 2048
            for event in action["events"]:
                assert len(event.get("traceback") or "") <= 8192

    log = fuzz.agent.log_file.read_text(errors="replace")
    forged = [line for line in log.splitlines() if line.startswith(FORGED[:30])]
    assert forged == [], forged[:3]
    # oslo.messaging's tracebacks at ERROR for what it could not dispatch
    # or decode: one warning line each instead.
    assert "Exception during message handling" not in log
    assert "Failed to process message" not in log
    errors_logged = [line for line in log.splitlines()
                     if re.match(r"\S+ \S+ \d+ ERROR ", line)]
    assert errors_logged == [], errors_logged[:5]


@pytest.mark.parametrize("name", ["x" * 300, "a\x00b", "a\ud800b", "y" * 10_000_000])
def test_a_refused_build_is_recorded_with_checked_values_only(fuzz, name):
    """On PostgreSQL (which refuses NUL and lone surrogates in text): the
    caller gets INVALID_INPUT, never INTERNAL_ERROR, and the instance left
    for a caster to find holds nothing of the bad name."""
    from tests.functional.test_rpc_rabbitmq import raw_call

    uuid = str(uuidlib.uuid4())
    body = {"uuid": uuid, "name": name, "flavor": {"vcpus": 1, "memory_mb": 256, "root_gb": 1},
            "image": {"id": None, "url": None, "disk_format": None}}
    failure = json.loads(raw_call(fuzz.agent, "build_instance", {"instance": body})["failure"])
    assert failure["kwargs"]["code"] == "INVALID_INPUT", failure["kwargs"]
    assert failure["kwargs"]["params"][0] in ("name", "arguments")
    if failure["kwargs"]["params"][0] == "name":
        inst = wait_until(lambda: fuzz.db.list_instances(host=fuzz.host, internal=True)
                          and next((i for i in fuzz.db.list_instances(
                              host=fuzz.host, internal=True)
                              if i["uuid"] == uuid and i["vm_state"] == "error"), None),
                          10, "the refused build's record")
        assert inst["name"] == "" and inst["fault"]["code"] == "INVALID_INPUT"
