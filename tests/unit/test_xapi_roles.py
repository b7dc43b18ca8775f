"""The XenAPI role docs/install.md asks operators to grant is enough for every call
the driver makes, and no more than needed (tools/xapi_roles.py, tools/xapi_roles.json)."""

from __future__ import annotations

import re

import pytest

from tests.unit.repo_tools import REPO, load_tool


@pytest.fixture(scope="module")
def roles_tool():
    return load_tool("xapi_roles")


@pytest.fixture(scope="module")
def driver_calls(roles_tool):
    roles = roles_tool.load_roles()
    classes = {name.split(".")[0] for name in roles}
    return roles, roles_tool.calls_in_sources(roles_tool.driver_sources(), classes)


def test_every_call_the_driver_makes_is_a_xenapi_message(roles_tool, driver_calls):
    roles, calls = driver_calls
    assert calls, "the scanner found no XenAPI call in the driver"
    missing = sorted(calls - set(roles))
    assert not missing, f"the driver calls messages XenAPI does not have: {missing}"


def test_install_guide_names_the_least_role(roles_tool, driver_calls):
    roles, calls = driver_calls
    text = (REPO / "docs/install.md").read_text()
    documented = re.search(r"least role that works is \*\*([a-z-]+)\*\*", text)
    assert documented, "docs/install.md must state 'the least role that works is **<role>**'"
    assert documented.group(1) == roles_tool.least_role(roles, calls)
    assert f"role-name={documented.group(1)}" in text
    if "driver calls no plugin" in text:
        assert "host.call_plugin" not in calls, "docs/install.md section 6 is out of date"


def test_install_guide_names_the_role_of_the_dom0_image_handler(roles_tool):
    roles = roles_tool.load_roles()
    classes = {name.split(".")[0] for name in roles}
    calls = roles_tool.calls_in_sources(roles_tool.driver_sources(with_optional=True), classes)
    role = roles_tool.least_role(roles, calls)
    assert role == "pool-admin"  # host.call_plugin is reserved to it
    text = (REPO / "docs/install.md").read_text()
    assert f"`image_handler = dom0` needs **{role}**" in text


class TestLeastRole:
    ROLES = {
        "VM.get_record": ["pool-admin", "pool-operator", "vm-power-admin", "vm-admin",
                          "vm-operator", "client-cert", "read-only"],
        "VM.start": ["pool-admin", "pool-operator", "vm-power-admin", "vm-admin",
                     "vm-operator", "client-cert"],
        "VM.create": ["pool-admin", "pool-operator", "vm-power-admin", "vm-admin"],
        "VM.start_on": ["pool-admin", "pool-operator", "vm-power-admin", "client-cert"],
        "host.call_plugin": ["pool-admin"],
    }

    def test_reads_only(self, roles_tool):
        assert roles_tool.least_role(self.ROLES, ["VM.get_record"]) == "read-only"

    def test_the_most_demanding_call_decides(self, roles_tool):
        assert roles_tool.least_role(self.ROLES, ["VM.get_record", "VM.start"]) == "vm-operator"
        assert roles_tool.least_role(self.ROLES, ["VM.start", "VM.create"]) == "vm-admin"

    def test_roles_are_not_assumed_nested(self, roles_tool):
        # VM.start_on skips vm-admin: with VM.create the answer is vm-power-admin.
        assert roles_tool.least_role(self.ROLES, ["VM.create", "VM.start_on"]) == "vm-power-admin"

    def test_why(self, roles_tool):
        calls = ["VM.get_record", "VM.create", "host.call_plugin"]
        assert roles_tool.least_role(self.ROLES, calls) == "pool-admin"
        assert roles_tool.needing(self.ROLES, calls, "pool-admin") == ["host.call_plugin"]

    def test_client_cert_only_is_no_answer(self, roles_tool):
        with pytest.raises(ValueError):
            roles_tool.least_role({"x.y": ["client-cert"]}, ["x.y"])

    def test_scanner_strips_async_and_ignores_non_classes(self, roles_tool, tmp_path):
        src = tmp_path / "m.py"
        src.write_text('a("Async.VM.start"); b("VM.create"); c("xenserver.connection_url")\n')
        assert roles_tool.calls_in_sources([src], {"VM"}) == {"VM.start", "VM.create"}


def test_roles_file_round_trips(roles_tool, tmp_path, monkeypatch):
    roles = roles_tool.load_roles()
    assert len(roles) > 1500 and roles["host.call_plugin"] == ["pool-admin"]
    monkeypatch.setattr(roles_tool, "ROLES_FILE", tmp_path / "roles.json")
    roles_tool.write_roles(roles)
    assert roles_tool.load_roles() == roles
