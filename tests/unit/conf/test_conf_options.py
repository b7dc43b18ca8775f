"""The option groups of compute_agent.conf: contract names, defaults, help text."""

import socket

import pytest
from oslo_config import cfg

from compute_agent.conf import (
    database,
    default,
    glance,
    image_cache,
    libvirt,
    opts,
    tasks,
    xenserver,
)


def _keystoneauth_names() -> set[str]:
    """[glance]'s session, auth and adapter options: keystoneauth1's own
    (their help text is the library's), listed for the docs and sample."""
    listed = glance.list_opts()[glance.glance_group]
    return {o.name for o in listed} - {o.name for o in glance.GLANCE_OPTS}


def _all_opts(include_library: bool = False):
    library = _keystoneauth_names()
    for group, group_opts in opts.list_opts():
        name = group if isinstance(group, str) else group.name
        for opt in group_opts:
            if include_library or not (name == "glance" and opt.name in library):
                yield name, opt


def _fresh_conf(args=(), files=()):
    conf = cfg.ConfigOpts()
    for module in (default, database, xenserver, tasks, libvirt, glance, image_cache):
        module.register_opts(conf)
    argv = list(args)
    for path in files:
        argv += ["--config-file", str(path)]
    conf(argv, project="compute-agent", default_config_files=[], default_config_dirs=[])
    return conf


def test_list_opts_groups():
    names = [g if isinstance(g, str) else g.name for g, _ in opts.list_opts()]
    assert names == ["DEFAULT", "database", "xenserver", "tasks", "libvirt", "console",
                     "metrics", "glance", "image_cache"]


def test_glance_takes_keystoneauth_options_and_defaults_to_the_image_service():
    conf = _fresh_conf()
    listed = {o.dest for _, o in _all_opts(include_library=True)}
    for name in ("auth_type", "auth_section", "endpoint_override", "valid_interfaces",
                 "cafile", "insecure", "region_name", "service_type", "timeout"):
        assert name.replace("-", "_") in listed
    for name in ("auth_type", "endpoint_override", "valid_interfaces", "cafile", "insecure"):
        assert name in conf.glance
    assert conf.glance.service_type == "image"
    assert conf.glance.valid_interfaces == ["internal", "public"]
    assert conf.glance.insecure is False  # TLS verified by default
    assert conf.image_cache.enabled is True
    assert conf.xenserver.image_handler == "stream"


def test_glance_password_auth_reads_keystoneauth_plugin_options(tmp_path):
    from keystoneauth1 import loading as ks_loading

    path = tmp_path / "agent.conf"
    path.write_text("[glance]\nauth_type = password\nauth_url = https://keystone.example/v3\n"
                    "username = agent\npassword = secret\nproject_name = service\n"
                    "user_domain_name = Default\nproject_domain_name = Default\n")
    # A group of its own: loading the plugin registers its options in the
    # group object, which the module-level glance_group would share.
    conf = cfg.ConfigOpts()
    conf.register_opts(glance.GLANCE_OPTS + glance.KEYSTONEAUTH_OPTS, group="glance")
    conf(["--config-file", str(path)], project="compute-agent", default_config_files=[],
         default_config_dirs=[])
    auth = ks_loading.load_auth_from_conf_options(conf, "glance")
    assert auth.auth_url == "https://keystone.example/v3"
    assert conf.glance.password == "secret" and conf.glance.username == "agent"


@pytest.mark.parametrize("group,opt", list(_all_opts()), ids=lambda v: getattr(v, "name", v))
def test_every_option_has_help(group, opt):
    assert opt.help and len(opt.help) > 15, f"[{group}] {opt.name} needs help text"


def test_secrets_are_secret():
    secret = {(g, o.name) for g, o in _all_opts() if o.secret}
    assert ("xenserver", "connection_password") in secret
    assert ("database", "connection") in secret  # the URL may carry a password


def test_contract_defaults():
    conf = _fresh_conf()
    assert conf.host == socket.gethostname()
    assert conf.state_path == "/var/lib/compute-agent"
    assert conf.concurrency_backend == "threading"
    assert conf.compute_topic == "compute"
    assert conf.max_concurrent_builds == 10
    assert conf.report_interval == 10
    assert conf.service_down_time == 60
    assert conf.sync_power_state_interval == 600
    assert conf.reap_orphans is False
    assert conf.compute_driver == "xenapi"
    assert conf.database.connection == "sqlite:////var/lib/compute-agent/compute-agent.sqlite"
    assert conf.database.connection_debug == 0
    assert conf.database.max_pool_size == 5 and conf.database.pool_size is None
    assert conf.xenserver.connection_url is None
    assert conf.xenserver.connection_username == "root"
    assert conf.xenserver.connection_password is None
    assert conf.xenserver.connection_concurrent == 5
    assert conf.xenserver.login_timeout == 10
    assert conf.xenserver.ca_file is None
    assert conf.xenserver.insecure is False
    assert conf.xenserver.sr_matching_filter == "default-sr:true"
    assert conf.xenserver.vm_template == ""
    assert conf.xenserver.event_poll_timeout == 30.0
    assert conf.tasks.default_timeout == 600
    assert conf.tasks.spawn_timeout == 1800
    assert conf.tasks.power_timeout == 300
    assert conf.tasks.reboot_timeout == 300
    assert conf.tasks.destroy_timeout == 300
    assert conf.tasks.progress_write_interval == 1.0
    assert conf.tasks.watcher_mode == "events"
    assert conf.tasks.poll_interval == 0.5


def test_state_path_interpolates_into_database_connection(tmp_path):
    path = tmp_path / "agent.conf"
    path.write_text("[DEFAULT]\nstate_path = /srv/ca\n")
    conf = _fresh_conf(files=[path])
    assert conf.database.connection == "sqlite:////srv/ca/compute-agent.sqlite"


def test_config_file_values(tmp_path):
    path = tmp_path / "agent.conf"
    path.write_text(
        "[DEFAULT]\nhost = xen-01\nconcurrency_backend = eventlet\ncompute_driver = fake\n"
        "[xenserver]\nconnection_url = https://dom0.example.org\nconnection_password = pw\n"
        "insecure = true\n[tasks]\nwatcher_mode = polling\npoll_interval = 0.1\n"
    )
    conf = _fresh_conf(files=[path])
    assert conf.host == "xen-01"
    assert conf.concurrency_backend == "eventlet"
    assert conf.compute_driver == "fake"
    assert conf.xenserver.connection_url == "https://dom0.example.org"
    assert conf.xenserver.connection_password == "pw"
    assert conf.xenserver.insecure is True
    assert conf.tasks.watcher_mode == "polling"
    assert conf.tasks.poll_interval == 0.1


@pytest.mark.parametrize("section,line", [
    ("DEFAULT", "concurrency_backend = asyncio"),
    ("DEFAULT", "compute_driver = vmware"),
    ("libvirt", "virt_type = lxc"),
    ("libvirt", "volume_format = vmdk"),
    ("DEFAULT", "max_concurrent_builds = 0"),
    ("tasks", "watcher_mode = sometimes"),
    ("xenserver", "connection_url = ftp://dom0"),
])
def test_invalid_values_are_refused(tmp_path, section, line):
    path = tmp_path / "agent.conf"
    path.write_text(f"[{section}]\n{line}\n")
    conf = _fresh_conf(files=[path])
    group = conf if section == "DEFAULT" else conf[section]
    with pytest.raises((ValueError, cfg.ConfigFileValueError)):
        getattr(group, line.split(" = ")[0])


def test_package_registers_on_global_conf():
    from compute_agent.conf import CONF

    assert CONF is cfg.CONF
    for group, opt in _all_opts():
        registered = CONF._get_opt_info(opt.dest, None if group == "DEFAULT" else group)["opt"]
        assert registered is opt
