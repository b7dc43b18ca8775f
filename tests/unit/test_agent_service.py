"""ComputeService wiring (in-process, fake:// transport) and its periodic jobs."""

from __future__ import annotations

import threading

import pytest

from compute_agent import exceptions
from compute_agent.service import ComputeService, PeriodicJobs


def test_periodic_jobs_run_repeatedly_and_survive_failures():
    jobs = PeriodicJobs()
    runs = {"ok": 0, "bad": 0}
    enough = threading.Event()

    def ok(ctxt):
        runs["ok"] += 1
        assert ctxt.request_id.startswith("req-")
        if runs["ok"] >= 3 and runs["bad"] >= 3:
            enough.set()

    def bad(ctxt):
        runs["bad"] += 1
        raise RuntimeError("job failed")

    jobs.add("ok", 0.01, ok)
    jobs.add("bad", 0.01, bad)
    jobs.add("disabled", -1, bad)  # a negative interval disables the job
    jobs.start()
    try:
        assert enough.wait(10)
    finally:
        jobs.stop()
    assert not jobs.alive
    assert "ok" in jobs.last_run and "bad" not in jobs.last_run


def test_start_refuses_unmigrated_database(agent_conf, override, tmp_path):
    override("connection", f"sqlite:///{tmp_path}/empty.sqlite", group="database")
    override("transport_url", "fake:///")
    svc = ComputeService(agent_conf)
    with pytest.raises(exceptions.DatabaseNotMigrated):
        svc.start()


def test_service_lifecycle_and_health(rpc_env, agent_conf):
    api, svc, driver, notes = rpc_env
    assert svc.healthy()
    assert svc.manager.driver is driver
    svc.reset()  # SIGHUP: nothing heavy, still serving
    assert api.ping(agent_conf.host)["host"] == agent_conf.host
    svc.stop()
    assert not svc.healthy()
    svc.wait()  # returns at once once stopped
    svc.stop()  # idempotent


@pytest.mark.parametrize("timeout, budget", [(60, 57.0), (10, 8.0), (2, 1.6), (0, None)])
def test_drain_budget_leaves_a_margin(agent_conf, override, timeout, budget):
    override("graceful_shutdown_timeout", timeout)
    assert ComputeService(agent_conf)._drain_budget() == budget
