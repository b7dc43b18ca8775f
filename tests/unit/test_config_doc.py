"""docs/config.md is generated from the options and must stay in step with them."""

from __future__ import annotations

import re

import pytest

from compute_agent.conf import opts as agent_opts
from tests.unit.repo_tools import REPO, load_tool


@pytest.fixture(scope="module")
def gen():
    return load_tool("gen_config_doc")


def sections(text: str) -> dict[str, str]:
    """'[group] name' -> the block of that option in the agent's part of the doc."""
    agent_part = text.split("## Library options")[0]
    found = {}
    group = None
    for block in re.split(r"\n(?=##)", agent_part):
        head = block.splitlines()[0]
        if head.startswith("## ["):
            group = head[4:-1]
        elif head.startswith("### `"):
            found[f"[{group}] {head[5:-1]}"] = block
    return found


def test_docs_config_md_is_up_to_date(gen):
    assert (REPO / "docs/config.md").read_text() == gen.render(), (
        "docs/config.md is stale: run .venv/bin/python tools/gen_config_doc.py"
    )


def test_every_agent_option_is_documented_with_its_help(gen):
    blocks = sections(gen.render())
    expected = set()
    for group, opts in agent_opts.list_opts():
        name = group if isinstance(group, str) else group.name
        for opt in opts:
            key = f"[{name}] {opt.dest}"
            expected.add(key)
            assert " ".join(opt.help.split()[:6]) in " ".join(blocks[key].split())
    assert set(blocks) == expected


def test_secrets_and_choices_are_shown(gen):
    blocks = sections(gen.render())
    assert "*secret*" in blocks["[xenserver] connection_password"]
    assert "*secret*" in blocks["[database] connection"]
    assert "*secret*" not in blocks["[xenserver] connection_username"]
    assert "- `xenapi`:" in blocks["[DEFAULT] compute_driver"]
    assert "≥ 1" in blocks["[DEFAULT] max_concurrent_builds"]


def test_library_options_come_from_the_installed_libraries(gen):
    text = gen.render()
    assert "#### `transport_url`\n\n*string* · default `rabbit://` · *secret*" in text
    assert "#### `graceful_shutdown_timeout`" in text


def test_check_mode_detects_a_stale_file(gen, tmp_path, capsys):
    doc = tmp_path / "config.md"
    assert gen.main(["-o", str(doc)]) == 0
    assert gen.main(["--check", "-o", str(doc)]) == 0
    doc.write_text(doc.read_text().replace("Seconds", "Minutes", 1))
    assert gen.main(["--check", "-o", str(doc)]) == 1
    assert "stale" in capsys.readouterr().err
