"""Guru Meditation Reports: a state dump of a live agent on SIGUSR2.

``kill -USR2 <pid>`` makes the agent write every thread's stack, the
configuration (secrets masked by oslo.config) and the package version to
stderr (the journal under systemd) or, with ``[oslo_reports] log_dir``, to
a file. It costs nothing until the signal arrives.
"""

from __future__ import annotations

from oslo_config import cfg
from oslo_reports import guru_meditation_report
from oslo_reports import opts as reports_opts

from compute_agent.process import version

SERVICE_NAME = "compute-agent"


def setup(conf: cfg.ConfigOpts, service_name: str = SERVICE_NAME) -> None:
    """Register ``[oslo_reports]`` options and install the SIGUSR2 handler.

    Call after the configuration files are parsed and logging is set up.
    """
    reports_opts.set_defaults(conf)
    guru_meditation_report.TextGuruMeditation.setup_autorun(
        version, service_name=service_name, conf=conf
    )
