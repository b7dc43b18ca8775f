"""event.from, event.inject and the legacy event.register/next on xapisim,
through the official SDK over real HTTP."""

from __future__ import annotations

import threading
import time

import pytest
import XenAPI

EVENT_KEYS = {"id", "timestamp", "class", "operation", "ref", "snapshot"}


def event_from(xapi, classes, token, timeout):
    return getattr(xapi.xenapi.event, "from")(classes, token, timeout)


def now_token(xapi, classes=("pool",)) -> str:
    """A token that skips everything that happened so far."""
    return event_from(xapi, list(classes), "", 0.0)["token"]


def ops(batch) -> list[tuple[str, str, str]]:
    return [(e["class"], e["operation"], e["ref"]) for e in batch["events"]]


def new_network(xapi, label="net") -> str:
    return xapi.xenapi.network.create({"name_label": label, "name_description": "",
                                       "MTU": "1500", "other_config": {}, "bridge": "",
                                       "managed": True, "tags": []})


def test_empty_token_returns_every_object_as_add(xapi):
    vms = xapi.xenapi.VM.get_all_records()
    batch = event_from(xapi, ["vm"], "", 0.0)
    assert set(batch) == {"events", "valid_ref_counts", "token"}
    assert isinstance(batch["token"], str) and batch["token"]
    assert sorted(e["ref"] for e in batch["events"]) == sorted(vms)
    for e in batch["events"]:
        assert set(e) == EVENT_KEYS
        assert e["class"] == "vm" and e["operation"] == "add"
        assert isinstance(e["id"], str) and isinstance(e["timestamp"], str)
        assert e["snapshot"] == vms[e["ref"]]
    assert {k: int(v) for k, v in batch["valid_ref_counts"].items()} == {"vm": len(vms)}


def test_add_mod_del(xapi):
    token = now_token(xapi, ["network"])
    net = new_network(xapi)
    batch = event_from(xapi, ["network"], token, 5.0)
    assert ops(batch) == [("network", "add", net)]
    assert batch["events"][0]["snapshot"]["name_label"] == "net"

    xapi.xenapi.network.set_name_label(net, "renamed")
    batch = event_from(xapi, ["network"], batch["token"], 5.0)
    assert ops(batch) == [("network", "mod", net)]
    assert batch["events"][0]["snapshot"]["name_label"] == "renamed"

    xapi.xenapi.network.destroy(net)
    batch = event_from(xapi, ["network"], batch["token"], 5.0)
    assert ops(batch) == [("network", "del", net)]
    assert "snapshot" not in batch["events"][0]
    assert set(batch["events"][0]) == EVENT_KEYS - {"snapshot"}


def test_changes_between_two_calls_are_coalesced(xapi):
    token = now_token(xapi, ["network"])
    doomed = new_network(xapi, "doomed")
    xapi.xenapi.network.destroy(doomed)
    batch = event_from(xapi, ["network"], token, 0.2)
    assert batch["events"] == []  # born and died in between: nothing

    net = new_network(xapi, "v1")
    batch = event_from(xapi, ["network"], batch["token"], 5.0)
    for label in ("v2", "v3", "v4"):
        xapi.xenapi.network.set_name_label(net, label)
    batch = event_from(xapi, ["network"], batch["token"], 5.0)
    assert ops(batch) == [("network", "mod", net)]  # three changes, one event
    assert batch["events"][0]["snapshot"]["name_label"] == "v4"


def test_class_filters(xapi):
    pool = xapi.xenapi.pool.get_all()[0]
    token = now_token(xapi, ["*"])
    xapi.xenapi.pool.set_name_description(pool, "changed")
    net = new_network(xapi)
    assert ops(event_from(xapi, ["network"], token, 5.0)) == [("network", "add", net)]
    assert ops(event_from(xapi, ["pool"], token, 5.0)) == [("pool", "mod", pool)]
    # class names are case-insensitive; events name classes in lower case
    assert ops(event_from(xapi, ["Pool", "NETWORK"], token, 5.0)) == [
        ("pool", "mod", pool), ("network", "add", net)]
    everything = ops(event_from(xapi, ["*"], token, 5.0))
    assert ("pool", "mod", pool) in everything and ("network", "add", net) in everything


def test_object_subscriptions(xapi):
    a, b = (new_network(xapi, label) for label in ("a", "b"))
    token = now_token(xapi, ["network"])
    xapi.xenapi.network.set_name_label(b, "b2")
    xapi.xenapi.network.set_name_label(a, "a2")
    assert ops(event_from(xapi, [f"network/{a}"], token, 5.0)) == [("network", "mod", a)]
    assert ops(event_from(xapi, [f"network/{b}"], token, 5.0)) == [("network", "mod", b)]
    # nothing more for a: a short wait comes back empty
    later = event_from(xapi, [f"network/{a}"], token, 5.0)["token"]
    xapi.xenapi.network.set_name_label(b, "b3")
    assert event_from(xapi, [f"network/{a}"], later, 0.2)["events"] == []


def test_valid_ref_counts(xapi):
    before = event_from(xapi, ["network", "pool"], "", 0.0)["valid_ref_counts"]
    new_network(xapi)
    after = event_from(xapi, ["network", "pool"], "", 0.0)["valid_ref_counts"]
    assert set(after) == {"network", "pool"}
    assert int(after["network"]) == int(before["network"]) + 1
    assert int(after["pool"]) == int(before["pool"]) == 1


def test_valid_ref_counts_are_i4_on_xmlrpc(sim, xapi, rawxml):
    """xapi sends these as <i4> (Int32), unlike every other int."""
    batch = getattr(rawxml, "event.from")(xapi._session, ["pool"], "", 0.0)["Value"]
    assert batch["valid_ref_counts"] == {"pool": 1}


def test_float_timeout_returns_empty_after_the_timeout(xapi):
    token = now_token(xapi)
    start = time.monotonic()
    batch = event_from(xapi, ["pool"], token, 0.3)
    elapsed = time.monotonic() - start
    assert batch["events"] == []
    assert 0.25 <= elapsed < 5.0
    assert batch["token"]


def test_a_change_wakes_a_waiting_call(sim, xapi):
    """The long-poll returns when something changes, not at its timeout."""
    pool = xapi.xenapi.pool.get_all()[0]
    token = now_token(xapi)
    changer = XenAPI.Session(sim.url)
    changer.xenapi.login_with_password("root", "password", "2.0", "t")
    timer = threading.Timer(0.2, changer.xenapi.pool.set_name_label, (pool, "woken"))
    timer.start()
    try:
        start = time.monotonic()
        batch = event_from(xapi, ["pool"], token, 30.0)
        assert time.monotonic() - start < 20
        assert ops(batch) == [("pool", "mod", pool)]
    finally:
        timer.join()
        changer.xenapi.session.logout()


def test_tokens_from_before_a_restart_give_events_lost(sim, xapi):
    token = now_token(xapi)
    sim.restart_xapi()
    # the SDK logs in again by itself; the token does not survive
    with pytest.raises(XenAPI.Failure) as e:
        event_from(xapi, ["pool"], token, 0.0)
    assert e.value.details == ["EVENTS_LOST"]
    assert event_from(xapi, ["pool"], "", 0.0)["events"]


@pytest.mark.parametrize("token", ["garbage", "12x", "1,2,3"])
def test_unparsable_token(xapi, token):
    with pytest.raises(XenAPI.Failure) as e:
        event_from(xapi, ["pool"], token, 0.0)
    assert e.value.details == ["EVENT_FROM_TOKEN_PARSE_FAILURE", token]


def test_unknown_class_subscription(xapi):
    with pytest.raises(XenAPI.Failure) as e:
        event_from(xapi, ["no_such_class"], "", 0.0)
    assert e.value.details == ["EVENT_SUBSCRIPTION_PARSE_FAILURE", "no_such_class"]


def test_inject_returns_a_token_and_produces_a_mod(xapi):
    pool = xapi.xenapi.pool.get_all()[0]
    token = now_token(xapi)
    injected = xapi.xenapi.event.inject("pool", pool)
    assert isinstance(injected, str) and injected
    batch = event_from(xapi, ["pool"], token, 5.0)
    assert ops(batch) == [("pool", "mod", pool)]
    assert batch["events"][0]["snapshot"] == xapi.xenapi.pool.get_record(pool)
    # the returned token is at the injected event: nothing after it
    assert event_from(xapi, ["pool"], injected, 0.1)["events"] == []


def test_inject_on_a_bad_ref(xapi):
    with pytest.raises(XenAPI.Failure) as e:
        xapi.xenapi.event.inject("pool", "OpaqueRef:NULL")
    assert e.value.details == ["HANDLE_INVALID", "pool", "OpaqueRef:NULL"]


def test_legacy_register_and_next(xapi):
    with pytest.raises(XenAPI.Failure) as e:
        xapi.xenapi.event.next()
    assert e.value.details[0] == "SESSION_NOT_REGISTERED"

    xapi.xenapi.event.register(["network"])
    net = new_network(xapi, "legacy")
    events = xapi.xenapi.event.next()
    assert [(e["class"], e["operation"], e["ref"]) for e in events] == [("network", "add", net)]
    assert events[0]["obj_uuid"] == xapi.xenapi.network.get_uuid(net)

    xapi.xenapi.network.set_name_label(net, "legacy2")
    xapi.xenapi.pool.set_name_description(xapi.xenapi.pool.get_all()[0], "not registered")
    events = xapi.xenapi.event.next()
    assert [(e["class"], e["operation"]) for e in events] == [("network", "mod")]

    xapi.xenapi.event.register(["pool"])
    xapi.xenapi.event.unregister(["network"])
    xapi.xenapi.network.set_name_label(net, "legacy3")
    pool = xapi.xenapi.pool.get_all()[0]
    xapi.xenapi.pool.set_name_description(pool, "registered now")
    events = xapi.xenapi.event.next()
    assert [(e["class"], e["operation"], e["ref"]) for e in events] == [("pool", "mod", pool)]


def test_task_progress_is_visible_as_events(sim, xapi):
    """An Async call's task appears as add, then mods up to success."""
    sim.faults.set_duration("VM.clone", 0.5)
    template = next(iter(xapi.xenapi.VM.get_all_records_where('field "is_a_template" = "true"')))
    token = now_token(xapi, ["task"])
    task = xapi.xenapi.Async.VM.clone(template, "evented")
    seen = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        batch = event_from(xapi, ["task"], token, 5.0)
        token = batch["token"]
        seen += [(e["operation"], e["snapshot"]["status"], float(e["snapshot"]["progress"]))
                 for e in batch["events"] if e["ref"] == task]
        if seen and seen[-1][1] != "pending":
            break
    assert seen[0][0] == "add"
    assert seen[-1][:2] == ("mod", "success") and seen[-1][2] == 1.0
    progress = [p for _, _, p in seen]
    assert progress == sorted(progress) and len(set(progress)) > 2
