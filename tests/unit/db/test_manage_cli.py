"""compute-agent-manage argument handling (no database server needed)."""

import pytest
from oslo_config import cfg

from compute_agent.cmd import manage
from compute_agent.conf import database, default


def _conf():
    conf = cfg.ConfigOpts()
    default.register_opts(conf)
    database.register_opts(conf)
    return conf


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        manage.main(["db", "migrate"], conf=_conf())
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_version_on_an_empty_sqlite_file(tmp_path, capsys):
    conf_file = tmp_path / "ca.conf"
    conf_file.write_text(f"[database]\nconnection = sqlite:///{tmp_path}/ca.sqlite\n")
    assert manage.main(["--config-file", str(conf_file), "db", "version"], conf=_conf()) == 0
    assert capsys.readouterr().out == "current: none\nhead: 0004_attachments\n"


def test_version_flag(capsys):
    from compute_agent.process import version

    with pytest.raises(SystemExit) as exit_info:
        manage.main(["--version"], conf=_conf())
    assert exit_info.value.code == 0
    out = capsys.readouterr()
    assert version.version_string() in out.out + out.err
