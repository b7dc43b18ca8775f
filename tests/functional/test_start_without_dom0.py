"""Start without dom0 (issue 15 part 5): a real ``compute-agent`` process
started while its ``xapi-sim`` is down, real RabbitMQ and SQLite.

The agent serves RPC at once (ping, reads, get_host_status with
``hypervisor_available: false``), refuses work that needs dom0 with
HYPERVISOR_UNAVAILABLE (nothing written for it), says so in its log file,
keeps trying, and once dom0 answers runs recovery (an instance an earlier
run left in ``building/spawning`` settles) and takes work again.
"""

from __future__ import annotations

import re
import uuid as uuidlib

import pytest

from compute_agent import exceptions
from tests.functional.agent_stack import AgentStack
from tests.functional.harness import SETTLE_S, wait_until

pytestmark = pytest.mark.timeout(150)


def spec(name: str) -> dict:
    return {"uuid": str(uuidlib.uuid4()), "name": name,
            "flavor": {"vcpus": 1, "memory_mb": 256, "root_gb": 1},
            "image": {"id": None, "url": None, "disk_format": None}}


def test_agent_serves_without_dom0_and_recovers_when_it_answers(tmp_path):
    with AgentStack(tmp_path, "nodom0", task_duration=0.05, manage_db_sync=True) as stack:
        rpc, host, db, sim, agent = stack.rpc, stack.host, stack.db, stack.sim, stack.agent
        # What an earlier run left half done: a build that never reached dom0.
        stuck = spec("stuck")
        db.create_instance({**stuck, "host": host, "vm_state": "building",
                            "task_state": "spawning", "power_state": 0})
        stack.start(with_sim=False)  # dom0 is down
        assert stack.pong["host"] == host
        status = rpc.api.get_host_status(host)
        assert status["hypervisor_available"] is False
        assert status["error"]["code"] == "HYPERVISOR_UNAVAILABLE"
        assert rpc.api.get_instance(host, stuck["uuid"])["task_state"] == "spawning"
        assert [i["uuid"] for i in rpc.api.list_instances(host)] == [stuck["uuid"]]

        # Work that needs dom0 is refused, and nothing is written for it.
        body = spec("refused")
        with pytest.raises(exceptions.HypervisorUnavailable):
            rpc.api.build_instance(host, body, confirm=True)
        with pytest.raises(exceptions.InstanceNotFound):
            db.get_instance(body["uuid"])
        with pytest.raises(exceptions.HypervisorUnavailable):
            rpc.api.terminate_instance(host, stuck["uuid"], confirm=True)
        assert "dom0 is unreachable" in agent.log_tail()

        sim.start()  # dom0 answers: the agent connects and recovers
        wait_until(lambda: rpc.api.get_host_status(host)["hypervisor_available"], SETTLE_S,
                   "the agent to reach dom0", 0.2)
        inst = wait_until(lambda: (lambda i: i if i["task_state"] is None else None)(
            rpc.api.get_instance(host, stuck["uuid"])), SETTLE_S, "recovery of the stuck build")
        assert inst["vm_state"] == "error" and inst["fault"] is not None
        assert "Recovery (reconnect)" in agent.log_tail(20000)

        rpc.api.build_instance(host, body, confirm=True)
        built = wait_until(lambda: (lambda i: i if i["task_state"] is None else None)(
            rpc.api.get_instance(host, body["uuid"])), SETTLE_S, "the build")
        assert (built["vm_state"], built["power_state"]) == ("active", 1)
        assert agent.stop() == 0
        # debug = True (the harness's): the request, the driver operation,
        # each XenAPI call, task intent, record and end, and the recovery
        # decision are one line each with the request id and the instance.
        log = agent.log_tail(10**7).splitlines()
        for what, uuid in [("RPC build_instance(instance)", body["uuid"]),
                           ("Driver spawn of", body["uuid"]),
                           ("XenAPI Async.VM.start", body["uuid"]),
                           ("Task intent VM.start_on recorded for spawn", body["uuid"]),
                           ("of spawn recorded", body["uuid"]),
                           ("of spawn ended: success", body["uuid"]),
                           ("Recovery decision for", stuck["uuid"])]:
            lines = [line for line in log if what in line]
            assert lines, f"no debug line {what!r}"
            assert all(re.search(r"req-[0-9a-f-]{36}", line) and
                       f"[instance: {uuid}]" in line for line in lines), lines[:2]
        assert any("event.from batch:" in line for line in log)
