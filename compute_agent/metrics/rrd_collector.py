"""Instance and host metrics from the latest RRD poll, built at scrape time
(a Prometheus custom collector), so instances that stopped or went away
simply stop appearing.

Instance metrics carry ``uuid`` (the instance's), ``name`` and ``host``
(the agent's host); per-device ones also ``device``, per-vCPU ones
``vcpu``. Host metrics carry ``host``. Figures are rrdd's averages over
its 5 s step: ratios of one CPU, bytes, bytes per second.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_INSTANCE = ["uuid", "name", "host"]


def _gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=_INSTANCE + list(extra))


class RrdCollector(Collector):
    """``latest()`` gives MetricsPoll.latest(): {sample, names, host} or None."""

    def __init__(self, latest: Callable[[], dict[str, Any] | None]):
        self.latest = latest

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # families vary with what dom0 reports

    def collect(self) -> Iterator[GaugeMetricFamily]:
        latest = self.latest()
        if latest is None:
            return
        sample, names, host = latest["sample"], latest["names"], latest["host"]
        yield from self._instances(sample["instances"], names, host)
        yield from self._host(sample, host)

    def _instances(self, instances: dict[str, Any], names: dict[str, str], host: str
                   ) -> Iterator[GaugeMetricFamily]:
        cpu = _gauge("compute_agent_instance_cpu_utilisation_ratio",
                     "Average busy fraction of the instance's vCPUs over the last step.")
        vcpu = _gauge("compute_agent_instance_vcpu_utilisation_ratio",
                      "Busy fraction of one vCPU over the last step.", ("vcpu",))
        vcpus = _gauge("compute_agent_instance_vcpus", "vCPUs the instance's domain has.")
        mem = _gauge("compute_agent_instance_memory_bytes", "Memory given to the domain.")
        free = _gauge("compute_agent_instance_memory_free_bytes",
                      "Memory the guest reports free (needs the guest agent).")
        rd = _gauge("compute_agent_instance_disk_read_bytes_per_second",
                    "Disk reads of one virtual disk.", ("device",))
        wr = _gauge("compute_agent_instance_disk_write_bytes_per_second",
                    "Disk writes of one virtual disk.", ("device",))
        rx = _gauge("compute_agent_instance_network_receive_bytes_per_second",
                    "Bytes received on one virtual NIC.", ("device",))
        tx = _gauge("compute_agent_instance_network_transmit_bytes_per_second",
                    "Bytes sent on one virtual NIC.", ("device",))
        for uuid, fig in sorted(instances.items()):
            labels = [uuid, names.get(uuid, ""), host]
            if fig["cpu"]["average"] is not None:
                cpu.add_metric(labels, fig["cpu"]["average"])
            vcpus.add_metric(labels, fig["cpu"]["count"])
            for i, u in enumerate(fig["cpu"]["utilisation"]):
                vcpu.add_metric(labels + [str(i)], u)
            if fig["memory"]["total_bytes"] is not None:
                mem.add_metric(labels, fig["memory"]["total_bytes"])
            if fig["memory"]["free_bytes"] is not None:
                free.add_metric(labels, fig["memory"]["free_bytes"])
            for d in fig["disks"]:
                rd.add_metric(labels + [d["device"]], d["read_bytes_per_second"])
                wr.add_metric(labels + [d["device"]], d["write_bytes_per_second"])
            for n in fig["nics"]:
                rx.add_metric(labels + [n["device"]], n["rx_bytes_per_second"])
                tx.add_metric(labels + [n["device"]], n["tx_bytes_per_second"])
        yield from (cpu, vcpu, vcpus, mem, free, rd, wr, rx, tx)

    def _host(self, sample: dict[str, Any], host: str) -> Iterator[GaugeMetricFamily]:
        fig = sample["host"]
        labels = [host]

        def gauge(name: str, doc: str, value: Any) -> Iterator[GaugeMetricFamily]:
            if value is not None:
                g = GaugeMetricFamily(name, doc, labels=["host"])
                g.add_metric(labels, value)
                yield g

        yield from gauge("compute_agent_host_cpu_utilisation_ratio",
                         "Average busy fraction of the host's CPUs over the last step.",
                         fig["cpu"]["average"])
        yield from gauge("compute_agent_host_memory_total_bytes", "The host's memory.",
                         fig["memory"]["total_bytes"])
        yield from gauge("compute_agent_host_memory_free_bytes", "The host's free memory.",
                         fig["memory"]["free_bytes"])
        yield from gauge("compute_agent_host_load_average", "dom0's load average.",
                         fig.get("load_average"))
        yield from gauge("compute_agent_metrics_sample_timestamp_seconds",
                         "When the agent last read the host's RRDs (Unix time).",
                         sample["sampled_at"])
        rx = GaugeMetricFamily("compute_agent_host_network_receive_bytes_per_second",
                               "Bytes received on one physical NIC.", labels=["host", "device"])
        tx = GaugeMetricFamily("compute_agent_host_network_transmit_bytes_per_second",
                               "Bytes sent on one physical NIC.", labels=["host", "device"])
        for n in fig["nics"]:
            rx.add_metric([host, n["device"]], n["rx_bytes_per_second"])
            tx.add_metric([host, n["device"]], n["tx_bytes_per_second"])
        yield from (rx, tx)
