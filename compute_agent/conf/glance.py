"""Options of the [glance] group: how the agent reaches the image service.

The group takes keystoneauth1's standard session (``cafile``, ``insecure``,
``certfile``, ``timeout``...), auth (``auth_type``, ``auth_url``,
``username``...) and adapter (``service_type``, ``valid_interfaces``,
``endpoint_override``, ``region_name``...) options, registered with
keystoneauth's own loading helpers, as nova's ``[glance]`` does: a
Keystone-backed cloud configures it the way it configures every other
service, and ``auth_type = none`` with ``endpoint_override`` reaches a
Glance that runs without Keystone. TLS is verified unless ``insecure``.
"""

from keystoneauth1 import loading as ks_loading
from oslo_config import cfg

GROUP = "glance"
SERVICE_TYPE = "image"
VALID_INTERFACES = ["internal", "public"]

glance_group = cfg.OptGroup(
    GROUP,
    title="Image service (Glance) options",
    help="Connection to the OpenStack Image service (Glance v2) that builds fetch "
    "images from and snapshots are uploaded to. Takes keystoneauth1's session, auth "
    "and adapter options.",
)

GLANCE_OPTS = [
    cfg.IntOpt(
        "num_retries",
        default=2,
        min=0,
        help="How many times a failed image metadata request is retried (data "
        "transfers are not retried: a build fails with IMAGE_UNAVAILABLE).",
    ),
    cfg.IntOpt(
        "chunk_size_kb",
        default=1024,
        min=16,
        max=16384,
        help="Size in KiB of the pieces image data moves in (download, import into "
        "dom0, snapshot upload). Memory per transfer stays at about two of them.",
    ),
]


def _adapter_opts() -> list[cfg.Opt]:
    opts = ks_loading.get_adapter_conf_options(include_deprecated=False)
    cfg.set_defaults(opts, service_type=SERVICE_TYPE, valid_interfaces=VALID_INTERFACES)
    return opts


# keystoneauth1's options, made once: registering and listing the same
# objects keeps a config file, the sample and the docs in step. The chosen
# auth plugin's own options (auth_url, username, password, project_name...
# for auth_type = password) are registered by keystoneauth when it loads the
# plugin, as for every OpenStack service.
KEYSTONEAUTH_OPTS: list[cfg.Opt] = (
    ks_loading.get_session_conf_options()
    + ks_loading.get_auth_common_conf_options()
    + _adapter_opts()
)


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(glance_group)
    conf.register_opts(GLANCE_OPTS + KEYSTONEAUTH_OPTS, group=glance_group)


def list_opts() -> dict[cfg.OptGroup, list[cfg.Opt]]:
    return {glance_group: GLANCE_OPTS + KEYSTONEAUTH_OPTS}
