"""The oracle's type checker rejects what xapi would never send, so a
passing conformance run means something."""

from __future__ import annotations

import xmlrpc.client

import pytest

from tests.conformance.oracle import Oracle, T, TypeChecker, parse


@pytest.fixture(scope="module")
def xml_check(oracle: Oracle) -> TypeChecker:
    return TypeChecker(oracle, "xmlrpc")


@pytest.fixture(scope="module")
def json_check(oracle: Oracle) -> TypeChecker:
    return TypeChecker(oracle, "json")


def test_parse_types():
    assert parse("(string -> enum vm_operations) map") == T(
        "map", args=(T("string"), T("enum", "vm_operations")))
    assert parse("VM ref set") == T("set", args=(T("ref", "VM"),))
    assert parse("(int -> string set) map").args[1] == T("set", args=(T("string"),))
    assert parse("sr_stat record option") == T("option", args=(T("record", "sr_stat"),))


@pytest.mark.parametrize("type_text, good, bad", [
    ("int", "42", [42, "4.2", True, ""]),
    ("float", 0.5, ["0.5", 1, True]),
    ("bool", False, ["false", 0]),
    ("datetime", xmlrpc.client.DateTime("20260101T00:00:00Z"),
     ["20260101T00:00:00Z", xmlrpc.client.DateTime("2026-01-01")]),
    ("VM ref", "OpaqueRef:NULL", ["OpaqueRef:x", "", 1]),
    ("enum vm_power_state", "Halted", ["halted", "Crashed"]),
    ("string set", ["a"], ["a", [1], {"a": "b"}]),
    ("(int -> float) map", {"0": 1.0}, [{"x": 1.0}, {"0": "1.0"}, []]),
    ("(enum vm_operations -> string) map", {"start": "x"}, [{"begin": "x"}]),
])
def test_xmlrpc_rules(xml_check, type_text, good, bad):
    t = parse(type_text)
    assert xml_check.value(t, good, "v") == []
    for value in bad:
        assert xml_check.value(t, value, "v"), f"{value!r} accepted as {type_text}"


def test_json_rules(json_check):
    assert json_check.value(parse("int"), 42, "v") == []
    assert json_check.value(parse("int"), "42", "v")
    assert json_check.value(parse("float"), 1, "v") == []
    assert json_check.value(parse("datetime"), "20260101T00:00:00Z", "v") == []


def test_records_need_exactly_the_declared_fields(oracle, xml_check):
    rec = {name: "" for name in oracle.fields["VM_metrics"]}
    problems = xml_check.record("VM_metrics", {**rec, "extra": ""}, "r")
    assert any("undeclared fields ['extra']" in p for p in problems)
    del rec["uuid"]
    assert any("missing fields ['uuid']" in p for p in xml_check.record("VM_metrics", rec, "r"))


def test_error_descriptions(oracle):
    assert oracle.error_problem(["HANDLE_INVALID", "VM", "OpaqueRef:NULL"]) is None
    assert "declared 2" in oracle.error_problem(["HANDLE_INVALID", "VM"])
    assert "undeclared" in oracle.error_problem(["NO_SUCH_ERROR_CODE"])
