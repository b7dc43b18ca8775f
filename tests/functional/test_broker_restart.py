"""The broker restarted during builds (issue 15 part 2): a RabbitMQ node of
the test's own (tests/functional/rabbit_node.py, never the shared one), a
real ``compute-agent`` process on SQLite and a real ``xapi-sim`` with 1 s
tasks.

Builds are accepted (calls), the node is stopped while they run in dom0 and
started again: every build settles once (one create action, one VM each,
dom0 and the database agree), and the agent answers ``ping`` soon after
the broker is back (the time is printed; the bound is only a deadline).
"""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Iterator

import pytest

from compute_agent import exceptions
from tests.functional.agent_stack import AgentStack
from tests.functional.e2e.stack import assert_dom0_matches_db
from tests.functional.harness import SETTLE_S, wait_until
from tests.functional.rabbit_node import SERVER, RabbitNode

BUILDS = 6
BROKER_BACK_LIMIT_S = 30.0  # deadline for the first ping after the broker's return

pytestmark = [pytest.mark.timeout(240)]


def spec(i: int) -> dict:
    return {"uuid": str(uuidlib.uuid4()), "name": f"broker-{i}",
            "flavor": {"vcpus": 1, "memory_mb": 256, "root_gb": 1},
            "image": {"id": None, "url": None, "disk_format": None}}


@pytest.fixture
def node(tmp_path) -> Iterator[RabbitNode]:
    """The broker of the test's own, stopped after the agent stack."""
    assert SERVER.exists(), "rabbitmq-server is not installed"
    node = RabbitNode(tmp_path).start()
    try:
        yield node
    finally:
        node.stop()


def test_builds_settle_once_across_a_broker_restart(tmp_path, node):
    with AgentStack(tmp_path, "broker", task_duration=1.0, rabbit_url=node.url,
                    manage_db_sync=True,
                    options={"DEFAULT": {"max_concurrent_builds": BUILDS}}) as stack:
        stack.start()
        rpc, host, db, sim, agent = stack.rpc, stack.host, stack.db, stack.sim, stack.agent
        bodies = [spec(i) for i in range(BUILDS)]
        for body in bodies:
            rpc.api.build_instance(host, body, confirm=True)

        assert any(db.get_instance(b["uuid"])["task_state"] for b in bodies), \
            "the builds ended before the broker went down"
        node.stop()  # the builds go on in dom0 and the database meanwhile
        time.sleep(2)
        node.start()
        back = time.monotonic()

        def pong():
            try:
                return rpc.api.ping(host, timeout=2)
            except exceptions.ComputeAgentError:
                return None

        wait_until(pong, BROKER_BACK_LIMIT_S, "ping after the broker's return", 0.2)
        print(f"first ping {time.monotonic() - back:.1f} s after the broker was back")

        for body in bodies:
            inst = wait_until(lambda b=body: (lambda i: i if i["task_state"] is None else None)(
                rpc.api.get_instance(host, b["uuid"])), SETTLE_S, f"build of {body['name']}")
            assert (inst["vm_state"], inst["power_state"]) == ("active", 1), inst
            assert [a["action"] for a in db.list_actions(body["uuid"])] == ["create"]
        counts = assert_dom0_matches_db(sim, db, host)
        assert counts == {"active": BUILDS}
        assert agent.stop() == 0
