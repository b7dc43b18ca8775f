"""Options of the [DEFAULT] group that belong to the agent itself."""

import socket

from oslo_config import cfg

DEFAULT_OPTS = [
    cfg.HostAddressOpt(
        "host",
        default=socket.gethostname(),
        sample_default="<current_hostname>",
        help="Name of this compute host. It is the RPC server name the agent listens "
        "on (topic.host), the key of its compute node and service records, and the "
        "'host' field of the instances it manages. Must be unique per agent.",
    ),
    cfg.StrOpt(
        "state_path",
        default="/var/lib/compute-agent",
        help="Top-level directory for the agent's local state, such as the default "
        "SQLite database.",
    ),
    cfg.StrOpt(
        "concurrency_backend",
        default="threading",
        choices=[
            ("threading", "Native threads (the default)."),
            ("eventlet", "Green threads; monkey-patches the process at start-up."),
        ],
        help="Concurrency model of the agent process. It is chosen before anything "
        "else is imported, so it can only be set in a configuration file or on the "
        "command line, never changed at run time.",
    ),
    cfg.StrOpt(
        "compute_topic",
        default="compute",
        help="RPC topic the agent listens on and clients send compute requests to.",
    ),
    cfg.IntOpt(
        "max_concurrent_builds",
        default=10,
        min=1,
        help="Largest number of instance builds that run at the same time on this "
        "host; further builds wait for a free slot.",
    ),
    cfg.IntOpt(
        "max_concurrent_live_migrations",
        default=1,
        min=1,
        help="Largest number of live migrations that leave this host at the same "
        "time (each moves a running VM's memory and, without shared storage, its "
        "disks); further migrations wait for a free slot.",
    ),
    cfg.IntOpt(
        "live_migration_peer_timeout",
        default=60,
        min=1,
        help="Seconds the agent a live migration leaves waits for the destination "
        "agent to answer (to prepare, or to take the instance over once it runs "
        "there). A destination that does not answer in time refuses the migration, "
        "or, once the VM runs there, takes the instance over when it starts.",
    ),
    cfg.IntOpt(
        "report_interval",
        default=10,
        min=1,
        help="Seconds between two heartbeats and host resource reports written to "
        "the database.",
    ),
    cfg.IntOpt(
        "service_down_time",
        default=60,
        min=1,
        help="Seconds since the last heartbeat after which a service is considered "
        "down. Should be well above report_interval.",
    ),
    cfg.IntOpt(
        "sync_power_state_interval",
        default=600,
        help="Seconds between two runs of the job that reconciles the power state "
        "recorded in the database with the hypervisor's. A negative value disables "
        "the job.",
    ),
    cfg.BoolOpt(
        "reap_orphans",
        default=False,
        help="Destroy VMs that this agent created in dom0 but the database no longer "
        "knows. When false, such VMs are only logged.",
    ),
    cfg.BoolOpt(
        "config_drive",
        default=False,
        help="Give every new instance an OpenStack config drive (an ISO 9660 CD "
        "labelled config-2 with its metadata, keys, user data and ports) for guests "
        "with cloud-init instead of a guest agent. A build can ask for one with "
        "'config_drive: true' when this is off.",
    ),
    cfg.StrOpt(
        "compute_driver",
        default="xenapi",
        choices=[
            ("xenapi", "XenServer / XCP-ng through the XenAPI."),
            ("libvirt", "Xen (libxl) or KVM through libvirt; see the [libvirt] group."),
            ("fake", "In-memory driver for tests; manages no real VM."),
        ],
        help="Hypervisor driver the agent uses.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(DEFAULT_OPTS)


def list_opts() -> dict[str, list[cfg.Opt]]:
    return {"DEFAULT": DEFAULT_OPTS}
