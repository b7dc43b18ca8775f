"""Fixtures of the in-process libvirt driver tests: the config on
``test:///default``, drivers made on it (cleaned up after the test), the
test's own connection to the same hypervisor, and a migrated SQLite
database for a real ComputeManager."""

from __future__ import annotations

import uuid as uuidlib

import libvirt
import pytest

from compute_agent.conf import CONF
from compute_agent.db.api import Database
from compute_agent.driver.libvirt.driver import LibvirtDriver
from compute_agent.rpc import transport as rpc_transport
from tests.functional.db_fixtures import make_migrated_database_url
from tests.functional.libvirt_inprocess import POOL, URI, Recorder


@pytest.fixture
def conf():
    rpc_transport.register_opts(CONF)
    CONF([], project="compute-agent", default_config_files=[])
    CONF.set_override("connection_uri", URI, "libvirt")
    CONF.set_override("virt_type", "xen", "libvirt")
    CONF.set_override("storage_pool", POOL, "libvirt")
    yield CONF
    CONF.reset()
    CONF.clear_override("connection_uri", "libvirt")
    CONF.clear_override("virt_type", "libvirt")
    CONF.clear_override("storage_pool", "libvirt")


@pytest.fixture
def make_driver(conf):
    made = []

    def make(**libvirt_opts) -> tuple[LibvirtDriver, Recorder]:
        for key, value in libvirt_opts.items():
            conf.set_override(key, value, "libvirt")
        recorder = Recorder()
        driver = LibvirtDriver(conf, recorder)
        driver.init_host(f"agent-{uuidlib.uuid4().hex[:8]}")
        made.append(driver)
        return driver, recorder

    yield make
    for driver in made:
        driver.cleanup_host()
    for key in ("virt_type", "xen_hvm", "reconnect_interval"):
        conf.clear_override(key, "libvirt")


@pytest.fixture
def outside(make_driver):
    """The test's own connection to the same in-process hypervisor (opened
    after a driver registered libvirt's event loop)."""
    make_driver()
    conn = libvirt.open(URI)
    yield conn
    conn.close()


@pytest.fixture
def database():
    url, drop = make_migrated_database_url("sqlite")
    db = Database(url)
    yield db
    db.dispose()
    drop()
