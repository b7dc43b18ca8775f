"""compute-agent-status upgrade check against real parts: the simulator over HTTP
and HTTPS (the official XenAPI SDK underneath), RabbitMQ, SQLite, PostgreSQL and
MariaDB, plus sockets the test owns for the unreachable and silent cases."""

from __future__ import annotations

import socket
import subprocess
import uuid
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from oslo_config import cfg
from oslo_messaging import opts as messaging_opts

from compute_agent.checks import Code, broker, database, dom0
from compute_agent.db import migration
from tests.functional.db_fixtures import make_database_url, make_migrated_database_url
from tests.functional.harness import BIN, RABBIT, db_sync, free_port
from xapisim.server import Simulator

SIM_PASSWORD = "sim-secret-pw"


@pytest.fixture
def silent_server():
    """Accepts TCP connections and never says a word."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    yield srv.getsockname()[1]
    srv.close()


@pytest.fixture
def sim():
    s = Simulator(users={"root": SIM_PASSWORD}).start()
    yield s
    s.stop()


def xenserver(url: str, password: str = SIM_PASSWORD, ca_file: str = "", insecure=False):
    return SimpleNamespace(connection_url=url, connection_username="root",
                           connection_password=password, ca_file=ca_file, insecure=insecure)


def messaging_conf(url: str) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf([], project="compute-agent-test", default_config_files=[])
    for group, opts in messaging_opts.list_opts():
        if group is None:  # [DEFAULT]: transport_url and friends, oslo.messaging's objects
            conf.register_opts(opts)
    conf.set_override("transport_url", url)
    return conf


class TestCommandLine:
    def test_everything_reachable_exits_0(self, tmp_path, sim):
        conf = tmp_path / "compute-agent.conf"
        conf.write_text(
            "[DEFAULT]\n"
            f"state_path = {tmp_path}\n"
            f"transport_url = {RABBIT}\n"
            "[database]\n"
            f"connection = sqlite:///{tmp_path}/agent.sqlite\n"
            "[xenserver]\n"
            f"connection_url = {sim.url}\n"
            f"connection_password = {SIM_PASSWORD}\n"
        )
        db_sync(conf)
        proc = subprocess.run(
            [str(BIN / "compute-agent-status"), "--config-file", str(conf), "upgrade", "check"],
            capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        labels = [line.split()[:2] for line in proc.stdout.splitlines()[:-1]]
        assert labels == [["OK", "config"], ["OK", "database"], ["OK", "dom0"], ["OK", "broker"]]
        assert f"logged in to {sim.url}" in proc.stdout
        assert SIM_PASSWORD not in proc.stdout + proc.stderr
        # A checker has no business with eventlet (the agent's optional backend).
        assert "Eventlet" not in proc.stderr

    def test_unreachable_dom0_and_broker_exit_2_one_line_each(self, tmp_path):
        conf = tmp_path / "compute-agent.conf"
        dom0_port, broker_port = free_port(), free_port()
        conf.write_text(
            "[DEFAULT]\n"
            f"transport_url = rabbit://guest:guest@127.0.0.1:{broker_port}/\n"
            "[database]\n"
            f"connection = sqlite:///{tmp_path}/agent.sqlite\n"
            "[xenserver]\n"
            f"connection_url = http://127.0.0.1:{dom0_port}\n"
        )
        proc = subprocess.run(
            [str(BIN / "compute-agent-status"), "--config-file", str(conf), "upgrade", "check",
             "--timeout", "3"],
            capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 2
        lines = dict(
            (line.split()[1], line) for line in proc.stdout.splitlines()[:-1]
        )
        assert lines["dom0"].startswith(
            f"FAILURE  dom0      http://127.0.0.1:{dom0_port} is unreachable:")
        assert "Connection refused" in lines["dom0"]
        assert lines["broker"].startswith("FAILURE  broker    cannot connect to RabbitMQ:")
        assert f"127.0.0.1:{broker_port}" in lines["broker"]


class TestDatabase:
    @pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mysql"])
    def test_migrated_database_is_ok(self, backend):
        url, cleanup = make_migrated_database_url(backend)
        try:
            result = database.check(url, timeout=5)
        finally:
            cleanup()
        assert result.code == Code.SUCCESS, result.detail
        assert f"at revision {migration.head()} (current)" in result.detail

    @pytest.mark.parametrize("backend", ["postgresql", "mysql"])
    def test_empty_server_database_needs_db_sync(self, backend):
        url, cleanup = make_database_url(backend)
        try:
            result = database.check(url, timeout=5)
        finally:
            cleanup()
        assert result.code == Code.FAILURE
        assert result.detail.endswith("has no schema; run 'compute-agent-manage db sync'")

    @pytest.mark.parametrize("scheme", ["postgresql+psycopg2", "mysql+pymysql"])
    def test_unreachable_server(self, scheme):
        url = f"{scheme}://agent:pw-not-shown@127.0.0.1:{free_port()}/ca_x"
        result = database.check(url, timeout=3)
        assert result.code == Code.FAILURE
        assert result.detail.startswith(f"cannot connect to {scheme}://agent:***@127.0.0.1:")
        assert "pw-not-shown" not in result.detail

    def test_revision_unknown_to_this_code(self, tmp_path):
        url, cleanup = make_migrated_database_url("sqlite")
        try:
            engine = sa.create_engine(url)
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE alembic_version SET version_num = 'f00dfeed'"))
            engine.dispose()
            result = database.check(url, timeout=5)
        finally:
            cleanup()
        assert result.code == Code.FAILURE
        assert "at revision f00dfeed, which this code does not know" in result.detail

    def test_database_behind_the_code(self, tmp_path):
        # A scratch script directory whose head is one migration past the
        # database's revision: exactly what an upgraded agent on an old DB sees.
        versions = tmp_path / "migrations/versions"
        versions.mkdir(parents=True)
        for rev, down in (("aaa1", None), ("bbb2", "aaa1"), ("ccc3", "bbb2")):
            (versions / f"{rev}.py").write_text(
                f"revision = {rev!r}\ndown_revision = {down!r}\n"
                "branch_labels = None\ndepends_on = None\n"
                "def upgrade():\n    pass\n\ndef downgrade():\n    pass\n"
            )
        db_file = tmp_path / "agent.sqlite"
        engine = sa.create_engine(f"sqlite:///{db_file}")
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32))"))
            conn.execute(sa.text("INSERT INTO alembic_version VALUES ('aaa1')"))
        engine.dispose()
        result = database.check(f"sqlite:///{db_file}", 5, str(tmp_path / "migrations"))
        assert result.code == Code.FAILURE
        assert "is at revision aaa1, 2 migration(s) behind ccc3; run" in result.detail


class TestDom0:
    def test_login_names_the_product(self, sim):
        result = dom0.check(xenserver(sim.url), "xenapi", timeout=5)
        assert result.code == Code.SUCCESS, result.detail
        assert result.detail.startswith(f"logged in to {sim.url}")
        assert result.detail.endswith("as root")

    def test_wrong_password(self, sim):
        result = dom0.check(xenserver(sim.url, password="wrong-pw"), "xenapi", timeout=5)
        assert result.code == Code.FAILURE
        assert result.detail == (
            f"{sim.url} rejected user root: check [xenserver] connection_username and "
            "connection_password")
        assert "wrong-pw" not in result.detail

    def test_pool_member_url_warns_and_names_the_coordinator(self):
        sim = Simulator(hosts=2, users={"root": SIM_PASSWORD}).start()
        try:
            member = [u for u in sim.urls if u != sim.master_url][0]
            result = dom0.check(xenserver(member), "xenapi", timeout=5)
        finally:
            sim.stop()
        assert result.code == Code.WARNING, result.detail
        assert f"the coordinator is {sim.master_url}" in result.detail

    def test_silent_dom0_times_out(self, silent_server):
        result = dom0.check(xenserver(f"http://127.0.0.1:{silent_server}"), "xenapi", timeout=1)
        assert result.code == Code.FAILURE
        assert "timed out" in result.detail


class TestDom0TLS:
    @pytest.fixture
    def tls_sim(self):
        s = Simulator(users={"root": SIM_PASSWORD}, tls=True).start()
        yield s
        s.stop()

    def test_verified_with_the_hosts_certificate(self, tls_sim):
        result = dom0.check(xenserver(tls_sim.url, ca_file=tls_sim.ca_file), "xenapi", timeout=5)
        assert result.code == Code.SUCCESS, result.detail

    def test_untrusted_certificate_says_how_to_fix(self, tls_sim):
        result = dom0.check(xenserver(tls_sim.url), "xenapi", timeout=5)
        assert result.code == Code.FAILURE
        assert "certificate" in result.detail
        assert result.detail.endswith("set [xenserver] ca_file to the pool's CA or certificate "
                                      "(docs/install.md)")

    def test_insecure_works_but_warns(self, tls_sim):
        result = dom0.check(xenserver(tls_sim.url, insecure=True), "xenapi", timeout=5)
        assert result.code == Code.WARNING
        assert "TLS certificate checks are off" in result.detail


class TestBroker:
    def test_rabbitmq_reachable(self):
        result = broker.check(messaging_conf(RABBIT), timeout=5)
        assert result.code == Code.SUCCESS, result.detail
        assert result.detail == "connected to RabbitMQ at 127.0.0.1:5672"

    def test_wrong_credentials(self):
        user = f"nobody-{uuid.uuid4().hex[:6]}"
        result = broker.check(
            messaging_conf(f"rabbit://{user}:bad-pw@127.0.0.1:5672/"), timeout=5)
        assert result.code == Code.FAILURE
        assert "credentials refused" in result.detail
        assert "bad-pw" not in result.detail

    def test_silent_server_times_out(self, silent_server):
        result = broker.check(
            messaging_conf(f"rabbit://guest:guest@127.0.0.1:{silent_server}/"), timeout=1)
        assert result.code == Code.FAILURE, result.detail

    def test_one_of_two_hosts_down_is_a_warning(self):
        port = free_port()
        url = f"rabbit://guest:guest@127.0.0.1:5672,guest:guest@127.0.0.1:{port}/"
        result = broker.check(messaging_conf(url), timeout=3)
        assert result.code == Code.WARNING, result.detail
        assert result.detail.startswith(f"1 of 2 RabbitMQ hosts unreachable: 127.0.0.1:{port}")

    def test_non_rabbit_driver_is_not_probed(self):
        result = broker.check(messaging_conf("kafka://127.0.0.1:9092/"), timeout=1)
        assert result.code == Code.WARNING
        assert result.detail == "transport driver 'kafka' is not checked"
