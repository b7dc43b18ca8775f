"""The Prometheus side: what the RRD collector and the agent's hooks put in
the exposition format, read back with prometheus_client's own parser."""

from __future__ import annotations

import time

import oslo_messaging
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from compute_agent import exceptions
from compute_agent.context import new_context
from compute_agent.metrics import agent
from compute_agent.metrics.exporter import parse_listen
from compute_agent.metrics.rrd_collector import RrdCollector
from compute_agent.rpc.server import ComputeEndpoint

UUID = "6f1c2b0e-3d1a-4c55-8f8e-2f4b1e9d0a11"


def samples(*collectors) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry()
    for c in collectors:
        registry.register(c)
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_rrd_collector_labels_instances_and_host():
    sample = {
        "sampled_at": time.time(), "step": 5, "host_uuid": "h",
        "host": {"cpu": {"count": 2, "utilisation": [0.1, 0.3], "average": 0.2},
                 "memory": {"total_bytes": 1024, "free_bytes": 512}, "load_average": 0.5,
                 "nics": [{"device": "eth0", "rx_bytes_per_second": 1.0,
                           "tx_bytes_per_second": 2.0}]},
        "instances": {UUID: {
            "vm_uuid": "v", "cpu": {"count": 2, "utilisation": [0.5, 0.25], "average": 0.375},
            "memory": {"total_bytes": 4096, "free_bytes": None},
            "disks": [{"device": "xvda", "read_bytes_per_second": 10.0,
                       "write_bytes_per_second": 20.0}],
            "nics": []}},
    }
    got = samples(RrdCollector(lambda: {"sample": sample, "names": {UUID: "web"},
                                        "host": "hv1"}))
    inst = (("host", "hv1"), ("name", "web"), ("uuid", UUID))
    assert got[("compute_agent_instance_cpu_utilisation_ratio", inst)] == 0.375
    assert got[("compute_agent_instance_vcpu_utilisation_ratio",
                tuple(sorted(inst + (("vcpu", "1"),))))] == 0.25
    assert got[("compute_agent_instance_disk_write_bytes_per_second",
                tuple(sorted(inst + (("device", "xvda"),))))] == 20.0
    assert got[("compute_agent_instance_memory_bytes", inst)] == 4096
    assert not any(k[0] == "compute_agent_instance_memory_free_bytes" for k in got)
    assert got[("compute_agent_host_cpu_utilisation_ratio", (("host", "hv1"),))] == 0.2
    assert got[("compute_agent_host_network_transmit_bytes_per_second",
                (("device", "eth0"), ("host", "hv1")))] == 2.0
    assert samples(RrdCollector(lambda: None)) == {}


def test_operations_in_flight_by_request():
    names = [f"start-{UUID}", f"build-{UUID[:-1]}2", f"build-{UUID[:-1]}3"]
    got = samples(agent.InFlightCollector(lambda: names))
    assert got[("compute_agent_operations_in_flight", (("request", "build"),))] == 2
    assert got[("compute_agent_operations_in_flight", (("request", "start"),))] == 1


def _value(name: str, **labels: str) -> float:
    return agent.REGISTRY.get_sample_value(name, labels) or 0.0


def test_rpc_requests_counted_by_method_and_outcome():
    class Manager:
        def ping(self, ctxt):
            return {"pong": True}

        def get_instance(self, ctxt, instance_uuid):
            raise exceptions.InstanceNotFound(instance_uuid)

    endpoint = ComputeEndpoint(Manager())
    before = (_value("compute_agent_rpc_requests_total", method="ping", outcome="success"),
              _value("compute_agent_rpc_requests_total", method="get_instance",
                     outcome="error"))
    endpoint.ping(new_context())
    with pytest.raises(oslo_messaging.ExpectedException):
        endpoint.get_instance(new_context(), instance_uuid=UUID)
    assert _value("compute_agent_rpc_requests_total", method="ping",
                  outcome="success") == before[0] + 1
    assert _value("compute_agent_rpc_requests_total", method="get_instance",
                  outcome="error") == before[1] + 1


def test_database_errors_and_image_bytes_and_task_wait():
    engine = sa.create_engine("sqlite://")
    agent.watch_engine(engine)
    agent.watch_engine(engine)  # once per engine
    before = _value("compute_agent_database_errors_total", error="OperationalError")
    with pytest.raises(sa.exc.OperationalError), engine.connect() as conn:
        conn.execute(sa.text("SELECT * FROM no_such_table"))
    assert _value("compute_agent_database_errors_total", error="OperationalError") == before + 1

    before = _value("compute_agent_image_bytes_transferred_total", direction="download")
    agent.count_image_bytes(1000)
    agent.count_image_bytes(0)
    assert _value("compute_agent_image_bytes_transferred_total",
                  direction="download") == before + 1000

    before = _value("compute_agent_task_wait_seconds_count", operation="spawn")
    agent.task_wait("spawn", 1.5)
    assert _value("compute_agent_task_wait_seconds_count", operation="spawn") == before + 1


@pytest.mark.parametrize("listen,expected", [("127.0.0.1:9180", ("127.0.0.1", 9180)),
                                             ("[::1]:9180", ("::1", 9180))])
def test_parse_listen(listen, expected):
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["9180", "host:", ":80", "h:99999", "h:x"])
def test_parse_listen_refuses(listen):
    with pytest.raises(exceptions.InvalidInput):
        parse_listen(listen)
