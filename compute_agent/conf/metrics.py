"""Options of the [metrics] group: RRD polling and the Prometheus endpoint."""

from oslo_config import cfg

metrics_group = cfg.OptGroup(
    "metrics",
    title="Metrics options",
    help="Instance and host figures read from dom0's RRDs (one /rrd_updates request "
    "per host and interval), get_diagnostics, and the Prometheus /metrics endpoint.",
)

METRICS_OPTS = [
    cfg.StrOpt(
        "listen",
        default="",
        help="host:port on which the agent serves Prometheus metrics at /metrics, "
        "for example 127.0.0.1:9180 or [::1]:9180. Empty (the default) serves none.",
    ),
    cfg.IntOpt(
        "rrd_interval",
        default=60,
        min=5,
        help="Seconds between two reads of dom0's RRD updates. 5 is xcp-rrdd's step; "
        "shorter intervals would only repeat the same rows.",
    ),
    cfg.StrOpt(
        "rrd_format",
        default="xml",
        choices=[("xml", "rrdtool xport XML, what every xcp-rrdd serves"),
                 ("json", "the same document as JSON (recent xcp-rrdd)")],
        help="Format of the /rrd_updates document the agent asks dom0 for.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(metrics_group)
    conf.register_opts(METRICS_OPTS, group=metrics_group)


def list_opts() -> dict[cfg.OptGroup, list[cfg.Opt]]:
    return {metrics_group: METRICS_OPTS}
