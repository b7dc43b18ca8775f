"""Options of the [xenserver] group: how the agent reaches dom0."""

from oslo_config import cfg

xenserver_group = cfg.OptGroup(
    "xenserver",
    title="XenServer / XCP-ng options",
    help="Connection to the XenAPI of the dom0 (or pool coordinator) this agent "
    "manages. Used when compute_driver is xenapi.",
)

XENSERVER_OPTS = [
    cfg.URIOpt(
        "connection_url",
        schemes=["http", "https"],
        help="URL of the XenAPI endpoint, for example https://dom0.example.org or "
        "http://169.254.0.1 (the host-internal management network). When it names "
        "a pool member, the agent follows it to the pool coordinator.",
    ),
    cfg.StrOpt(
        "connection_username",
        default="root",
        help="User name for logging in to the XenAPI.",
    ),
    cfg.StrOpt(
        "connection_password",
        secret=True,
        help="Password for logging in to the XenAPI.",
    ),
    cfg.IntOpt(
        "connection_concurrent",
        default=5,
        min=1,
        help="Largest number of XenAPI sessions the agent keeps open to dom0 at once.",
    ),
    cfg.IntOpt(
        "login_timeout",
        default=10,
        min=1,
        help="Seconds to wait for a XenAPI login before dom0 is considered "
        "unreachable.",
    ),
    cfg.StrOpt(
        "ca_file",
        help="CA bundle used to verify the dom0 TLS certificate of an https "
        "connection_url. Unset uses the system's trust store.",
    ),
    cfg.BoolOpt(
        "insecure",
        default=False,
        help="Do not verify the dom0 TLS certificate. Only for test set-ups: it "
        "lets anyone on the path impersonate dom0.",
    ),
    cfg.StrOpt(
        "sr_matching_filter",
        default="default-sr:true",
        help="How to pick the storage repository for instance disks: "
        "'default-sr:true' uses the pool's default SR, 'other-config:KEY=VALUE' "
        "the first SR whose other-config has KEY set to VALUE.",
    ),
    cfg.StrOpt(
        "vm_template",
        default="",
        help="Name label of the template VMs are cloned from. Empty builds each VM "
        "from scratch.",
    ),
    cfg.StrOpt(
        "image_handler",
        default="stream",
        choices=[
            ("stream", "the agent streams the image into a new VDI through xapi's "
             "PUT /import_raw_vdi: works on every SR type"),
            ("dom0", "the dom0 plugin 'images' downloads the image inside dom0 "
             "straight into a file-based SR, then scans the SR"),
        ],
        help="How an image gets into dom0.",
    ),
    cfg.FloatOpt(
        "event_poll_timeout",
        default=30.0,
        min=1.0,
        help="Seconds an event.from long-poll waits in dom0 before returning with "
        "no events.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(xenserver_group)
    conf.register_opts(XENSERVER_OPTS, group=xenserver_group)


def list_opts() -> dict[cfg.OptGroup, list[cfg.Opt]]:
    return {xenserver_group: XENSERVER_OPTS}
