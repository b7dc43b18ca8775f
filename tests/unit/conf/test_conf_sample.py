"""The committed sample configuration is what the generator produces from the
code, and oslo-config-validator accepts it."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
GENERATOR_CONF = REPO / "etc/compute-agent/compute-agent-config-generator.conf"
SAMPLE = REPO / "etc/compute-agent/compute-agent.conf.sample"
BIN = Path(sys.executable).parent


def _run(tool, *args):
    return subprocess.run(
        [str(BIN / tool), "--config-file", str(GENERATOR_CONF), *args],
        cwd=REPO, capture_output=True, text=True, timeout=50,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def test_sample_is_in_sync_with_the_code(tmp_path):
    out = tmp_path / "sample.conf"
    proc = _run("oslo-config-generator", "--output-file", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == SAMPLE.read_text(), (
        "etc/compute-agent/compute-agent.conf.sample is stale; regenerate it with "
        ".venv/bin/oslo-config-generator --config-file "
        "etc/compute-agent/compute-agent-config-generator.conf"
    )


def test_sample_lists_every_group_and_hides_nothing_secret():
    text = SAMPLE.read_text()
    for section in ("[DEFAULT]", "[database]", "[xenserver]", "[tasks]",
                    "[oslo_messaging_rabbit]", "[oslo_messaging_notifications]"):
        assert section in text
    for line in ("#host = <current_hostname>", "#transport_url = ", "#debug = false",
                 "#graceful_shutdown_timeout = ", "#connection_password = <None>"):
        assert line in text


def test_validator_accepts_the_sample():
    proc = _run("oslo-config-validator", "--input-file", str(SAMPLE))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_validator_accepts_a_filled_in_config(tmp_path):
    path = tmp_path / "agent.conf"
    path.write_text(
        "[DEFAULT]\nhost = xen-01\ntransport_url = rabbit://guest:guest@127.0.0.1:5672/\n"
        "debug = true\ngraceful_shutdown_timeout = 30\n"
        "[database]\nconnection = postgresql+psycopg2://ca:pw@db/compute_agent\n"
        "[xenserver]\nconnection_url = https://dom0\nconnection_password = pw\n"
        "[tasks]\nspawn_timeout = 900\n"
        "[oslo_messaging_notifications]\ndriver = messagingv2\n"
    )
    proc = _run("oslo-config-validator", "--input-file", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_validator_refuses_an_unknown_option(tmp_path):
    # Proves the validator really checks our namespace, so the tests above mean something.
    path = tmp_path / "agent.conf"
    path.write_text("[xenserver]\nconnection_pasword = typo\n")
    proc = _run("oslo-config-validator", "--input-file", str(path))
    assert proc.returncode != 0
    assert "connection_pasword" in proc.stdout + proc.stderr
