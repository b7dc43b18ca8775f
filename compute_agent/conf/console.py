"""Options of the [console] group: browser consoles through the noVNC proxy."""

from oslo_config import cfg

console_group = cfg.OptGroup(
    "console",
    title="Console options",
    help="Graphical consoles in a browser: get_vnc_console issues a token and a URL "
    "of compute-agent-novncproxy, which checks the token in the database and "
    "relays the VM's VNC console from dom0.",
)

CONSOLE_OPTS = [
    cfg.IntOpt(
        "token_ttl",
        default=600,
        min=1,
        help="Seconds a console token stays usable after get_vnc_console issued it. "
        "A token opens one console session, once.",
    ),
    cfg.URIOpt(
        "novncproxy_base_url",
        default="http://127.0.0.1:6080/vnc_lite.html",
        schemes=["http", "https"],
        help="URL of the noVNC page as a browser reaches compute-agent-novncproxy "
        "(or the load balancer in front of it). get_vnc_console appends the "
        "websocket path and the token to it.",
    ),
    cfg.HostAddressOpt(
        "novncproxy_host",
        default="0.0.0.0",
        help="Address compute-agent-novncproxy listens on.",
    ),
    cfg.PortOpt(
        "novncproxy_port",
        default=6080,
        help="Port compute-agent-novncproxy listens on.",
    ),
    cfg.StrOpt(
        "novnc_web",
        default="/usr/share/novnc",
        help="Directory of noVNC's web files (vnc_lite.html, core/, ...) that "
        "compute-agent-novncproxy serves; Debian's novnc package installs them here.",
    ),
    cfg.IntOpt(
        "dom0_connect_timeout",
        default=10,
        min=1,
        help="Seconds compute-agent-novncproxy waits for dom0 to log it in and open "
        "a console.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(console_group)
    conf.register_opts(CONSOLE_OPTS, group=console_group)


def list_opts() -> dict[cfg.OptGroup, list[cfg.Opt]]:
    return {console_group: CONSOLE_OPTS}
