"""compute-agent-status: output, exit codes and configuration handling.

No network here: the configurations use compute_driver=fake and the fake://
transport, so the dom0 and broker checks answer without connecting; the
checks against real services are in tests/functional/test_status_check.py.
"""

from __future__ import annotations

import io
import json

import pytest
from oslo_config import cfg

from compute_agent.checks import Code, Result, dom0, failure, overall, success, warning
from compute_agent.cmd import status
from compute_agent.conf import opts as conf_opts
from compute_agent.process import version


def fresh_conf() -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    for group, opts in conf_opts.list_opts():
        conf.register_opts(opts, group=None if group == "DEFAULT" else group)
    return conf


def run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    rc = status.main(argv, conf=fresh_conf(), default_config_files=[], out=out)
    return rc, out.getvalue()


def write_conf(tmp_path, body: str) -> str:
    path = tmp_path / "compute-agent.conf"
    path.write_text(body)
    return str(path)


OFFLINE = """[DEFAULT]
compute_driver = fake
transport_url = fake://
state_path = {tmp}
[database]
connection = sqlite:///{tmp}/agent.sqlite
"""


class TestOverall:
    def test_worst_result_wins(self):
        assert overall([]) == Code.SUCCESS
        assert overall([success("a", ""), warning("b", "")]) == Code.WARNING
        assert overall([warning("b", ""), failure("c", ""), success("a", "")]) == Code.FAILURE

    def test_codes_are_nova_status_exit_codes(self):
        assert [int(c) for c in (Code.SUCCESS, Code.WARNING, Code.FAILURE)] == [0, 1, 2]


class TestRender:
    RESULTS = [
        Result("config", Code.SUCCESS, "read /etc/x.conf"),
        Result("database", Code.WARNING, "meh"),
        Result("dom0", Code.FAILURE, "unreachable"),
    ]

    def test_text_is_one_aligned_line_per_check_and_a_verdict(self):
        out = io.StringIO()
        status.render(self.RESULTS, as_json=False, out=out)
        assert out.getvalue().splitlines() == [
            "OK       config    read /etc/x.conf",
            "WARNING  database  meh",
            "FAILURE  dom0      unreachable",
            "compute-agent-status: failure",
        ]

    def test_json(self):
        out = io.StringIO()
        status.render(self.RESULTS, as_json=True, out=out)
        data = json.loads(out.getvalue())
        assert data["result"] == "FAILURE" and data["code"] == 2
        assert data["checks"][1] == {
            "check": "database", "result": "WARNING", "code": 1, "detail": "meh"
        }


class TestUnreadableConfig:
    def test_missing_file_is_one_failure_line(self, tmp_path):
        missing = tmp_path / "nope.conf"
        rc, out = run(["--config-file", str(missing), "upgrade", "check"])
        assert rc == 2
        assert out.splitlines() == [
            f"FAILURE  config  cannot read {missing} (missing or not a file)",
            "compute-agent-status: failure",
        ]

    def test_parse_error_names_the_file_and_line(self, tmp_path):
        path = write_conf(tmp_path, "[DEFAULT]\nhost = a\n[xenserver\n")
        rc, out = run(["--config-file", path, "upgrade", "check"])
        assert rc == 2
        line = out.splitlines()[0]
        assert line.startswith(f"FAILURE  config  {path} is not valid INI:")
        assert ":3" in line

    def test_directory_as_config_file(self, tmp_path):
        rc, out = run(["--config-file", str(tmp_path), "upgrade", "check"])
        assert rc == 2 and out.startswith("FAILURE  config")

    def test_json_also_for_unreadable_config(self, tmp_path):
        rc, out = run(["--config-file", str(tmp_path / "x.conf"), "upgrade", "check", "--json"])
        assert rc == 2
        assert json.loads(out)["checks"][0]["check"] == "config"


class TestChecksWithoutNetwork:
    def test_fake_driver_and_transport_with_a_missing_database(self, tmp_path):
        path = write_conf(tmp_path, OFFLINE.format(tmp=tmp_path))
        rc, out = run(["--config-file", path, "upgrade", "check"])
        lines = out.splitlines()
        assert lines[0] == f"OK       config    read {path}"
        assert lines[1].startswith("FAILURE  database") and "db sync" in lines[1]
        assert lines[2] == "OK       dom0      not used: compute_driver = fake"
        assert lines[3].startswith("WARNING  broker    transport_url is fake://")
        assert lines[4] == "compute-agent-status: failure"
        assert rc == 2
        assert not (tmp_path / "agent.sqlite").exists(), "the check must not create the DB"

    def test_invalid_values_are_listed_and_dependent_checks_say_why(self, tmp_path):
        body = OFFLINE.format(tmp=tmp_path).replace(
            "compute_driver = fake", "compute_driver = xen\nreport_interval = soon")
        rc, out = run(["--config-file", write_conf(tmp_path, body), "upgrade", "check"])
        assert rc == 2
        config_line, _db, dom0_line, _broker, _verdict = out.splitlines()
        assert config_line.startswith("FAILURE  config    invalid values:")
        assert ("[DEFAULT] compute_driver: Valid values are [xenapi, libvirt, fake], "
                "but found 'xen'") in config_line
        assert "[DEFAULT] report_interval:" in config_line
        assert dom0_line == (
            "FAILURE  dom0      not checked: an option it needs is invalid (see config)")

    def test_no_config_file_at_all_is_a_warning(self):
        rc, out = run(["upgrade", "check"])
        assert out.splitlines()[0].startswith("WARNING  config    no configuration file found")

    def test_xenapi_driver_without_url(self, tmp_path):
        body = OFFLINE.format(tmp=tmp_path).replace("compute_driver = fake", "")
        rc, out = run(["--config-file", write_conf(tmp_path, body), "upgrade", "check"])
        assert "FAILURE  dom0      [xenserver] connection_url is not set" in out.splitlines()

    def test_secrets_never_printed(self, tmp_path):
        body = OFFLINE.format(tmp=tmp_path).replace(
            f"sqlite:///{tmp_path}/agent.sqlite",
            "postgresql+psycopg2://agent:s3cr3t-db@127.0.0.1:1/x",
        ) + "[xenserver]\nconnection_password = s3cr3t-xen\n"
        rc, out = run(["--config-file", write_conf(tmp_path, body), "upgrade", "check",
                       "--json", "--timeout", "2"])
        assert "s3cr3t" not in out
        assert "agent:***@" in out


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        status.main(["--version"], conf=fresh_conf(), default_config_files=[])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == version.version_string()


class TestDom0Warnings:
    def test_https_with_insecure(self):
        assert dom0._warnings("https://xs1", insecure=True) == [
            "TLS certificate checks are off ([xenserver] insecure = true)"]

    def test_https_verified_is_fine(self):
        assert dom0._warnings("https://xs1", insecure=False) == []

    @pytest.mark.parametrize("url", ["http://169.254.0.1", "http://127.0.0.1:8790",
                                     "http://localhost", "http://[::1]:80"])
    def test_plain_http_on_the_host_internal_network_is_fine(self, url):
        assert dom0._warnings(url, insecure=False) == []

    @pytest.mark.parametrize("url", ["http://192.0.2.10", "http://xs1.example.org"])
    def test_plain_http_across_the_network_warns(self, url):
        assert dom0._warnings(url, insecure=False) == [
            "plain HTTP sends the dom0 password unencrypted; use https"]
