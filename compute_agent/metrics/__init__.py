"""Prometheus exposition: the agent's own counters (agent), the figures
read from dom0's RRDs per instance and for the host (rrd_collector), and
the HTTP endpoint at [metrics] listen (exporter). docs/metrics.md lists
every metric."""
