"""The TaskWatcher's bookkeeping, fed event.from answers by hand: futures
resolved by task records, deletions, late registration, cache drift through
valid_ref_counts, and which VM changes become power-state callbacks. (The
stream itself, against a real simulator, is in the functional tests.)"""

from __future__ import annotations

from compute_agent.driver import power_state
from compute_agent.driver.xenapi import ownership
from compute_agent.driver.xenapi.watcher import TaskWatcher

HOST = "agent-1"


def watcher(**kw) -> TaskWatcher:
    w = TaskWatcher(pool=None, agent_host=HOST, **kw)  # type: ignore[arg-type]
    w._need_sync = False  # as after the first snapshot
    return w


def task(status: str = "pending", progress: float = 0.0, **extra) -> dict:
    return {"uuid": "u-1", "status": status, "progress": progress, "result": "",
            "error_info": [], **extra}


def answer(*events: dict, counts: dict | None = None, token: str = "t1") -> dict:
    return {"events": list(events), "valid_ref_counts": counts or {}, "token": token}


def ev(cls: str, ref: str, op: str = "mod", snapshot: dict | None = None) -> dict:
    e = {"id": 1, "class": cls, "operation": op, "ref": ref}
    if snapshot is not None:
        e["snapshot"] = snapshot
    return e


def vm(state: str = "Running", reason: str | None = None, when: str | None = None,
       domid: int = 5, host: str = HOST, uuid: str = "inst-1") -> dict:
    other = ownership.marks(uuid, host)
    if reason:
        other.update(last_shutdown_reason=reason, last_shutdown_time=when or "t")
    return {"power_state": state, "other_config": other, "domid": domid,
            "is_a_template": False, "is_a_snapshot": False, "name_label": "x", "uuid": "v"}


def test_task_records_resolve_the_future():
    w = watcher()
    wt = w.track("OpaqueRef:t")
    w._apply(answer(ev("task", "OpaqueRef:t", "add", task())))
    assert not wt.future.done() and wt.record["status"] == "pending"
    w._apply(answer(ev("task", "OpaqueRef:t", "mod",
                       task("success", 1.0, result="<value>OpaqueRef:vm</value>"))))
    outcome = wt.future.result(0)
    assert (outcome.status, outcome.result) == ("success", "OpaqueRef:vm")
    assert w._token == "t1"


def test_failure_and_cancelled():
    w = watcher()
    bad, gone = w.track("OpaqueRef:a"), w.track("OpaqueRef:b")
    w._apply(answer(
        ev("task", "OpaqueRef:a", "mod", task("failure", error_info=["SR_FULL", "1", "2"])),
        ev("task", "OpaqueRef:b", "mod", task("cancelled", error_info=["TASK_CANCELLED", "b"])),
    ))
    assert bad.future.result(0).error().code == "SR_FULL"
    assert gone.future.result(0).status == "cancelled"


def test_deleted_before_an_outcome_is_lost_and_remembered():
    w = watcher()
    wt = w.track("OpaqueRef:t")
    w._apply(answer(ev("task", "OpaqueRef:t", "del")))
    assert wt.future.result(0).status == "lost"
    # Registered after its deletion went by: lost at once.
    w._apply(answer(ev("task", "OpaqueRef:u", "add", task()), ev("task", "OpaqueRef:u", "del")))
    assert w.track("OpaqueRef:u").future.result(0).status == "lost"


def test_finished_before_registration():
    w = watcher()
    w._apply(answer(ev("task", "OpaqueRef:t", "add", task("success", 1.0))))
    wt = w.track("OpaqueRef:t")
    assert wt.future.result(0).status == "success"
    assert wt.known_uuid(0) == "u-1"


def test_undecodable_result_fails_the_future_not_the_stream():
    w = watcher()
    wt = w.track("OpaqueRef:t")
    w._apply(answer(ev("task", "OpaqueRef:t", "mod", task("success", result="<value><struct>"))))
    assert wt.future.exception(0).code == "TASK_RESULT_UNPARSEABLE"


def test_valid_ref_counts_drift_asks_for_a_resync():
    w = watcher()
    w._apply(answer(ev("task", "OpaqueRef:t", "add", task()), counts={"task": 1, "vm": 0}))
    assert not w._need_sync
    # dom0 has two tasks, we know one: some event was missed.
    w._apply(answer(counts={"task": 2, "vm": 0}))
    assert w._need_sync
    # ... but not again and again within RESYNC_MIN_INTERVAL.
    w._need_sync = False
    w._apply(answer(counts={"task": 3, "vm": 0}))
    assert not w._need_sync


def test_power_changes_of_own_vms_only():
    seen = []
    w = watcher(on_power_change=lambda u, info: seen.append((u, info)))
    w._apply(answer(ev("vm", "OpaqueRef:v", "add", vm("Running")),
                    ev("vm", "OpaqueRef:f", "add", vm("Running", host="other", uuid="x"))))
    assert w._deliveries.queue.empty()  # first sight is not a change
    w._apply(answer(ev("vm", "OpaqueRef:v", "mod", vm("Halted", "crashed", "t1")),
                    ev("vm", "OpaqueRef:f", "mod", vm("Halted", "halted", "t1", host="other",
                                                       uuid="x"))))
    uuid, info = w._deliveries.queue.get_nowait()
    assert uuid == "inst-1" and info.power_state == power_state.CRASHED
    assert info.vm_ref == "OpaqueRef:v" and info.shutdown_reason == "crashed"
    assert w._deliveries.queue.empty()
    # A guest reboot: still Running, same reason, new time and domain.
    w._apply(answer(ev("vm", "OpaqueRef:v", "mod", vm("Running", "rebooted", "t2", 6))))
    w._apply(answer(ev("vm", "OpaqueRef:v", "mod", vm("Running", "rebooted", "t3", 7))))
    infos = [w._deliveries.queue.get_nowait()[1] for _ in range(2)]
    assert [i.extra["domid"] for i in infos] == ["6", "7"]
    # Nothing that matters changed: no callback.
    changed_name = dict(vm("Running", "rebooted", "t3", 7), name_label="renamed")
    w._apply(answer(ev("vm", "OpaqueRef:v", "mod", changed_name)))
    assert w._deliveries.queue.empty()
