"""xapisim's HTTP handlers over real HTTP: /import_raw_vdi and
/export_raw_vdi (raw, VHD, chunked, truncated, too large, tasks, auth,
redirects), /rrd_updates, /vm_rrd, /host_rrd and /console. VHD files are
built and parsed here independently of the simulator's VHD code."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import shutil
import socket
import struct
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import XenAPI
from simvm import default_sr, make_vm, management_network, vif_record, wait_for, wait_task

from tests.functional.harness import PASSWORD, USER, running_simulator, sdk_session
from xapisim.server import Simulator

MiB = 1024 * 1024


@pytest.fixture
def x(xapi):
    return xapi.xenapi


def new_vdi(x, size: int = 4 * MiB, read_only: bool = False) -> str:
    return x.VDI.create({
        "name_label": "data", "name_description": "", "SR": default_sr(x),
        "virtual_size": str(size), "type": "user", "sharable": False, "read_only": read_only,
        "other_config": {},
    })


def url(sim: Simulator, path: str, **query: str) -> str:
    return f"{sim.url}{path}?{urllib.parse.urlencode(query)}"


def put(target: str, body, headers: dict | None = None) -> tuple[int, dict, bytes]:
    u = urllib.parse.urlsplit(target)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("PUT", f"{u.path}?{u.query}", body=body, headers=headers or {},
                     encode_chunked=not isinstance(body, bytes | type(None)))
        resp = conn.getresponse()
        return resp.status, dict(resp.headers), resp.read()
    finally:
        conn.close()


def get(target: str, headers: dict | None = None, follow: bool = True
        ) -> tuple[int, dict, bytes]:
    if not follow:
        u = urllib.parse.urlsplit(target)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        try:
            conn.request("GET", f"{u.path}?{u.query}", headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.headers), resp.read()
        finally:
            conn.close()
    try:
        with urllib.request.urlopen(urllib.request.Request(target, headers=headers or {}),
                                    timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def export(sim, xapi, vdi, fmt: str = "raw") -> bytes:
    status, _, body = get(url(sim, "/export_raw_vdi", session_id=xapi._session, vdi=vdi,
                              format=fmt))
    assert status == 200
    return body


def upload(sim, xapi, vdi, data: bytes, fmt: str = "raw") -> str:
    """Import ``data`` under a task of ours; return the task's status."""
    task = xapi.xenapi.task.create("import", "")
    status, _, _ = put(url(sim, "/import_raw_vdi", session_id=xapi._session, vdi=vdi,
                           format=fmt, task_id=task), data)
    assert status == 200
    return wait_task(xapi.xenapi, task)


# -- a VHD writer and reader of our own, from the specification ---------------------


def _checksum(raw: bytes, at: int) -> int:
    return ~(sum(raw[:at]) + sum(raw[at + 4:])) & 0xFFFFFFFF


def footer(size: int, disk_type: int, data_offset: int) -> bytes:
    raw = bytearray(512)
    raw[0:8] = b"conectix"
    struct.pack_into(">IIQ", raw, 8, 2, 0x10000, data_offset)
    raw[28:32] = b"test"
    struct.pack_into(">QQ", raw, 40, size, size)
    struct.pack_into(">I", raw, 60, disk_type)
    raw[68:84] = os.urandom(16)
    struct.pack_into(">I", raw, 64, _checksum(bytes(raw), 64))
    return bytes(raw)


def dynamic_vhd(size: int, block: int, blocks: dict[int, tuple[bytes, bytes]]) -> bytes:
    """blocks: index -> (sector bitmap, block data)."""
    entries = -(-size // block)
    bat_len = -(-entries * 4 // 512) * 512
    bitmap_len = -(-(block // 512 // 8) // 512) * 512
    header = bytearray(1024)
    header[0:8] = b"cxsparse"
    struct.pack_into(">QQIII", header, 8, 2**64 - 1, 1536, 0x10000, entries, block)
    struct.pack_into(">I", header, 36, _checksum(bytes(header), 36))
    bat = [0xFFFFFFFF] * entries
    body = b""
    offset = 1536 + bat_len
    for index, (bitmap, data) in sorted(blocks.items()):
        bat[index] = (offset + len(body)) // 512
        body += bitmap.ljust(bitmap_len, b"\0") + data
    table = struct.pack(f">{entries}I", *bat).ljust(bat_len, b"\xff")
    f = footer(size, 3, 512)
    return f + bytes(header) + table + body + f


def read_vhd(data: bytes) -> bytes:
    """The disk content of a fixed or dynamic VHD, checking its metadata."""
    foot = data[-512:]
    assert foot[:8] == b"conectix"
    assert struct.unpack(">I", foot[64:68])[0] == _checksum(foot, 64)
    size = struct.unpack(">Q", foot[48:56])[0]
    disk_type = struct.unpack(">I", foot[60:64])[0]
    if disk_type == 2:
        assert len(data) == size + 512
        return data[:size]
    assert disk_type == 3 and data[:512] == foot
    offset = struct.unpack(">Q", foot[16:24])[0]
    header = data[offset:offset + 1024]
    assert header[:8] == b"cxsparse"
    assert struct.unpack(">I", header[36:40])[0] == _checksum(header, 36)
    (table,) = struct.unpack(">Q", header[16:24])
    entries, block = struct.unpack(">II", header[28:36])
    bitmap_len = -(-(block // 512 // 8) // 512) * 512
    out = bytearray(entries * block)
    for i, sector in enumerate(struct.unpack(f">{entries}I", data[table:table + 4 * entries])):
        if sector != 0xFFFFFFFF:
            start = sector * 512 + bitmap_len
            out[i * block:(i + 1) * block] = data[start:start + block]
    return bytes(out[:size])


# -- import / export -------------------------------------------------------------------


def test_raw_round_trip_reports_on_the_callers_task(sim, xapi, x):
    vdi = new_vdi(x, 4 * MiB)
    data = os.urandom(3 * MiB + 17)
    task = x.task.create("import", "")
    status, headers, _ = put(url(sim, "/import_raw_vdi", session_id=xapi._session, vdi=vdi,
                                 task_id=task), data)
    assert status == 200
    assert headers["task-id"] == task
    rec = x.task.get_record(task)
    assert (rec["status"], rec["progress"]) == ("success", 1.0)
    assert rec["result"] == f"<value>{vdi}</value>"
    status, headers, body = get(url(sim, "/export_raw_vdi", session_id=xapi._session,
                                    vdi=x.VDI.get_uuid(vdi)))
    assert status == 200
    assert headers["Content-Type"] == "application/octet-stream"
    assert f'{x.VDI.get_uuid(vdi)}.raw' in headers["Content-Disposition"]
    assert body == data + bytes(4 * MiB - len(data))
    assert int(x.VDI.get_physical_utilisation(vdi)) > 0


@pytest.mark.parametrize("where", ["disk", "tmpfs"])
def test_raw_import_of_data_and_zero_blocks_reads_back_and_stays_sparse(tmp_path, where):
    # Blocks go to disk with O_DIRECT where the state directory allows it
    # (older kernels refuse it on tmpfs: the page cache then), the odd
    # tail through the page cache; blocks of zeros are holes. (Linux's
    # /dev/shm is the tmpfs: a machine without one fails here, not skips.)
    base = tmp_path if where == "disk" else Path(tempfile.mkdtemp(dir="/dev/shm"))
    with contextlib.ExitStack() as stack:
        if where == "tmpfs":
            stack.callback(shutil.rmtree, base, True)
        sim = stack.enter_context(running_simulator(task_duration=0.05, state_dir=str(base)))
        xapi = stack.enter_context(sdk_session(sim.url, "xapisim-tests", USER, PASSWORD))
        x = xapi.xenapi
        vdi = new_vdi(x, 16 * MiB)
        data = os.urandom(2 * MiB) + bytes(6 * MiB) + os.urandom(3 * MiB + 512) + bytes(512) \
            + os.urandom(777)
        assert upload(sim, xapi, vdi, data) == "success"
        assert export(sim, xapi, vdi) == data + bytes(16 * MiB - len(data))
        allocated = int(x.VDI.get_physical_utilisation(vdi))
        assert 4 * MiB < allocated < 8 * MiB  # the 6 MiB of zeros are not on disk
        again = os.urandom(len(data))  # a second import replaces the data whole
        assert upload(sim, xapi, vdi, again) == "success"
        assert export(sim, xapi, vdi)[:len(again)] == again


def test_export_of_a_vdi_never_written_is_zeros(sim, xapi, x):
    vdi = new_vdi(x, 1 * MiB)
    assert export(sim, xapi, vdi) == bytes(1 * MiB)


def test_upload_larger_than_the_vdi_is_refused_and_changes_nothing(sim, xapi, x):
    vdi = new_vdi(x, 1 * MiB)
    assert upload(sim, xapi, vdi, b"A" * MiB) == "success"
    task = x.task.create("import", "")
    status, _, _ = put(url(sim, "/import_raw_vdi", session_id=xapi._session, vdi=vdi,
                           task_id=task), b"B" * (MiB + 1))
    assert status == 400
    assert x.task.get_status(task) == "failure"
    assert x.task.get_error_info(task) == ["VDI_TOO_SMALL", vdi, str(MiB + 1)]
    assert export(sim, xapi, vdi) == b"A" * MiB


def test_truncated_upload_fails_the_task_and_keeps_the_old_data(sim, xapi, x):
    vdi = new_vdi(x, 2 * MiB)
    assert upload(sim, xapi, vdi, b"old!" * (MiB // 4)) == "success"
    task = x.task.create("import", "")
    u = urllib.parse.urlsplit(sim.url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        query = urllib.parse.urlencode({"session_id": xapi._session, "vdi": vdi, "task_id": task})
        s.sendall(f"PUT /import_raw_vdi?{query} HTTP/1.1\r\nHost: x\r\n"
                  f"Content-Length: {2 * MiB}\r\n\r\n".encode() + b"new!" * 1000)
        s.shutdown(socket.SHUT_WR)  # the client dies half way
        assert s.recv(12) == b"HTTP/1.1 200"  # xapi answers before the data moves
    assert wait_task(x, task) == "failure"
    code, message = x.task.get_error_info(task)
    assert code == "INTERNAL_ERROR" and "truncated" in message
    assert export(sim, xapi, vdi)[:MiB] == b"old!" * (MiB // 4)


def test_chunked_transfer_encoding_upload(sim, xapi, x):
    vdi = new_vdi(x, 2 * MiB)
    pieces = [os.urandom(100_000) for _ in range(7)]
    task = x.task.create("import", "")
    status, _, _ = put(url(sim, "/import_raw_vdi", session_id=xapi._session, vdi=vdi,
                           task_id=task), iter(pieces))
    assert status == 200
    assert wait_task(x, task) == "success"
    data = b"".join(pieces)
    assert export(sim, xapi, vdi)[:len(data)] == data


def test_chunked_upload_past_the_vdi_size_fails(sim, xapi, x):
    vdi = new_vdi(x, 1 * MiB)
    task = x.task.create("import", "")
    status, _, _ = put(url(sim, "/import_raw_vdi", session_id=xapi._session, vdi=vdi,
                           task_id=task), iter([b"x" * 600_000, b"y" * 600_000]))
    assert status == 200
    assert wait_task(x, task) == "failure"
    assert x.task.get_error_info(task)[0] == "VDI_TOO_SMALL"
    assert export(sim, xapi, vdi) == bytes(MiB)


def test_vhd_export_is_a_sparse_dynamic_vhd(sim, xapi, x):
    vdi = new_vdi(x, 8 * MiB)
    data = bytearray(8 * MiB)
    data[5 * MiB:5 * MiB + 4] = b"here"
    assert upload(sim, xapi, vdi, bytes(data)) == "success"
    status, headers, vhd = get(url(sim, "/export_raw_vdi", session_id=xapi._session, vdi=vdi,
                                   format="vhd"))
    assert status == 200 and headers["Content-Type"] == "application/vhd"
    assert read_vhd(vhd) == bytes(data)
    # only the one block holding data is stored (2 MiB blocks)
    assert len(vhd) < 3 * MiB


def test_fixed_vhd_import(sim, xapi, x):
    vdi = new_vdi(x, 2 * MiB)
    content = os.urandom(MiB)
    assert upload(sim, xapi, vdi, content + footer(MiB, 2, 2**64 - 1), "vhd") == "success"
    assert export(sim, xapi, vdi)[:MiB] == content


def test_dynamic_vhd_import_honours_the_sector_bitmap(sim, xapi, x):
    vdi = new_vdi(x, 1 * MiB)
    block = 64 * 1024
    full = b"\xff" * (block // 512 // 8)
    partial = bytes([0b10100000]) + bytes(block // 512 // 8 - 1)  # sectors 0 and 2
    vhd = dynamic_vhd(MiB, block, {0: (full, b"a" * block), 3: (partial, b"b" * block)})
    assert upload(sim, xapi, vdi, vhd, "vhd") == "success"
    disk = export(sim, xapi, vdi)
    assert disk[:block] == b"a" * block
    third = disk[3 * block:4 * block]
    assert third[:512] == b"b" * 512 and third[512:1024] == bytes(512)
    assert third[1024:1536] == b"b" * 512 and third[1536:] == bytes(block - 1536)
    assert disk[block:3 * block] == bytes(2 * block)


def test_vhd_round_trip_through_export_and_import(sim, xapi, x):
    a, b = new_vdi(x, 3 * MiB), new_vdi(x, 3 * MiB)
    data = os.urandom(3 * MiB)
    assert upload(sim, xapi, a, data) == "success"
    assert upload(sim, xapi, b, export(sim, xapi, a, "vhd"), "vhd") == "success"
    assert export(sim, xapi, b) == data


@pytest.mark.parametrize("damage", ["checksum", "too_big", "garbage"])
def test_bad_vhd_fails_the_task_and_keeps_the_vdi(sim, xapi, x, damage):
    vdi = new_vdi(x, 1 * MiB)
    assert upload(sim, xapi, vdi, b"k" * MiB) == "success"
    if damage == "checksum":
        f = bytearray(footer(MiB, 2, 2**64 - 1))
        f[64] ^= 0xFF
        body = bytes(MiB) + bytes(f)
    elif damage == "too_big":
        body = bytes(2 * MiB) + footer(2 * MiB, 2, 2**64 - 1)
    else:
        body = os.urandom(4096)
    task = x.task.create("import", "")
    status, _, _ = put(url(sim, "/import_raw_vdi", session_id=xapi._session, vdi=vdi,
                           format="vhd", task_id=task), body)
    assert status in (200, 400)
    assert wait_task(x, task) == "failure"
    error = x.task.get_error_info(task)
    if damage == "too_big":
        assert error[0] == "VDI_TOO_SMALL"
    else:
        assert error[0] == "INTERNAL_ERROR" and "VHD" in error[1]
    assert export(sim, xapi, vdi) == b"k" * MiB


def test_cancelled_upload_leaves_the_vdi_alone(sim, xapi, x):
    vdi = new_vdi(x, 2 * MiB)
    task = x.task.create("import", "")
    u = urllib.parse.urlsplit(sim.url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        query = urllib.parse.urlencode({"session_id": xapi._session, "vdi": vdi, "task_id": task})
        s.sendall(f"PUT /import_raw_vdi?{query} HTTP/1.1\r\nHost: x\r\n"
                  f"Content-Length: {2 * MiB}\r\n\r\n".encode() + b"z" * MiB)
        assert s.recv(12) == b"HTTP/1.1 200"
        x.task.cancel(task)
        try:
            s.sendall(b"z" * MiB)
        except OSError:
            pass  # the server may already have hung up
        assert wait_task(x, task) == "cancelled"
    assert x.task.get_error_info(task) == ["TASK_CANCELLED", task]
    assert export(sim, xapi, vdi) == bytes(2 * MiB)


def test_credentials(sim, xapi, x):
    vdi = new_vdi(x, 1 * MiB)
    task = x.task.create("import", "")
    status, _, _ = put(url(sim, "/import_raw_vdi", session_id="OpaqueRef:nope", vdi=vdi,
                           task_id=task), b"x")
    assert status == 401
    assert x.task.get_error_info(task) == ["SESSION_AUTHENTICATION_FAILED"]
    basic = base64.b64encode(b"root:password").decode()
    status, _, body = get(f"{sim.url}/export_raw_vdi?vdi={vdi}",
                          {"Authorization": f"Basic {basic}"})
    assert status == 200 and body == bytes(MiB)
    # the basic-auth session was for that request only
    assert sim.store.refs("session") == [xapi._session]
    wrong = base64.b64encode(b"root:wrong").decode()
    status, _, _ = get(f"{sim.url}/export_raw_vdi?vdi={vdi}", {"Authorization": f"Basic {wrong}"})
    assert status == 401


def test_bad_parameters(sim, xapi, x):
    vdi = new_vdi(x, 1 * MiB)
    sid = xapi._session
    status, _, _ = get(url(sim, "/export_raw_vdi", session_id=sid, vdi=vdi, format="qcow9"))
    assert status == 404
    task = x.task.create("import", "")
    status, _, _ = put(url(sim, "/import_raw_vdi", session_id=sid, vdi="nonsense",
                           task_id=task), b"x")
    assert status == 400
    assert x.task.get_error_info(task) == ["UUID_INVALID", "VDI", "nonsense"]
    status, _, _ = get(url(sim, "/export_raw_vdi", session_id=sid))
    assert status == 400
    status, _, _ = get(url(sim, "/export_raw_vdi", session_id=sid, vdi=vdi,
                           task_id="OpaqueRef:gone"))
    assert status == 404


def test_read_only_vdi_refuses_an_import(sim, xapi, x):
    vdi = new_vdi(x, 1 * MiB, read_only=True)
    task = x.task.create("import", "")
    status, _, _ = put(url(sim, "/import_raw_vdi", session_id=xapi._session, vdi=vdi,
                           task_id=task), b"x" * 512)
    assert status == 400
    assert x.task.get_error_info(task) == ["VDI_READONLY", vdi]


def test_import_into_an_sr_creates_the_vdi(sim, xapi, x):
    data = os.urandom(MiB)
    task = x.task.create("import", "")
    status, _, _ = put(url(sim, "/import_raw_vdi", session_id=xapi._session,
                           sr_id=default_sr(x), task_id=task), data)
    assert status == 200 and x.task.get_status(task) == "success"
    vdi = x.task.get_result(task)[len("<value>"):-len("</value>")]
    assert x.VDI.get_name_label(vdi) == "Imported VDI"
    assert int(x.VDI.get_virtual_size(vdi)) == MiB
    assert export(sim, xapi, vdi) == data


def test_own_task_is_announced_and_gone_afterwards(sim, xapi, x):
    vdi = new_vdi(x, 1 * MiB)
    status, headers, _ = put(url(sim, "/import_raw_vdi", session_id=xapi._session, vdi=vdi),
                             b"q" * 4096)
    assert status == 200
    assert headers["task-id"].startswith("OpaqueRef:")
    assert headers["task-id"] not in x.task.get_all()


def test_injected_fault_on_an_http_path(sim, xapi, x):
    vdi = new_vdi(x, 1 * MiB)
    sim.faults.add_rule("PUT /import_raw_vdi", "fail", 1, ["SR_BACKEND_FAILURE_44", "", "x"])
    task = x.task.create("import", "")
    status, _, _ = put(url(sim, "/import_raw_vdi", session_id=xapi._session, vdi=vdi,
                           task_id=task), b"x")
    assert status == 500
    assert x.task.get_error_info(task) == ["SR_BACKEND_FAILURE_44", "", "x"]
    assert upload(sim, xapi, vdi, b"ok" * 256) == "success"  # consumed


def test_vdi_of_a_member_is_served_by_that_member():
    sim = Simulator(hosts=2, task_duration=0.01).start()
    try:
        session = XenAPI.Session(sim.url)
        session.xenapi.login_with_password("root", "password", "2.0", "tests")
        x = session.xenapi
        member = next(h for h in x.host.get_all() if h != sim.master_ref)
        local_sr = next(x.PBD.get_SR(p) for p in x.host.get_PBDs(member))
        vdi = x.VDI.create({
            "name_label": "m", "name_description": "", "SR": local_sr,
            "virtual_size": str(MiB), "type": "user", "sharable": False, "read_only": False,
            "other_config": {},
        })
        status, headers, _ = get(url(sim, "/export_raw_vdi", session_id=session._session,
                                     vdi=vdi), follow=False)
        assert status == 302
        member_url = f"http://{x.host.get_address(member)}:{sim.port}"
        assert headers["Location"].startswith(member_url + "/export_raw_vdi?")
        status, _, body = get(headers["Location"])
        assert status == 200 and body == bytes(MiB)
        session.xenapi.session.logout()
    finally:
        sim.stop()


# -- RRDs -----------------------------------------------------------------------------


def running_vm(x) -> str:
    vm = make_vm(x, "rrd", memory=512 * MiB, vcpus=2)
    x.VIF.create(vif_record(vm, management_network(x), device="1"))
    x.VM.start(vm, False, False)
    return vm


def xport(sim, xapi, **query) -> tuple[dict, list[tuple[int, list[str]]], str]:
    status, headers, body = get(url(sim, "/rrd_updates", session_id=xapi._session, **query))
    assert status == 200
    root = ET.fromstring(body)
    meta = {e.tag: e.text for e in root.find("meta") if e.tag != "legend"}
    meta["legend"] = [e.text for e in root.find("meta/legend")]
    rows = [(int(r.find("t").text), [v.text for v in r.findall("v")])
            for r in root.find("data")]
    assert int(meta["rows"]) == len(rows)
    assert all(len(values) == int(meta["columns"]) == len(meta["legend"]) for _, values in rows)
    return meta, rows, headers["Content-Type"]


def test_rrd_updates_xml(sim, xapi, x):
    vm = running_vm(x)
    uuid = x.VM.get_uuid(vm)
    host_uuid = x.host.get_uuid(sim.master_ref)
    start = int(time.time()) - 120
    meta, rows, ctype = xport(sim, xapi, start=str(start), host="true")
    assert ctype == "text/xml"
    assert meta["step"] == "5" and int(meta["end"]) - int(meta["start"]) <= 120
    legend = meta["legend"]
    for ds in ("cpu0", "cpu1", "memory", "memory_internal_free", "vif_0_rx", "vif_0_tx",
               "vif_1_rx", "vbd_xvda_read", "vbd_xvda_write"):
        assert f"AVERAGE:vm:{uuid}:{ds}" in legend
    for ds in ("cpu0", "memory_total_kib", "memory_free_kib", "pif_eth0_rx", "pif_eth0_tx",
               "loadavg"):
        assert f"AVERAGE:host:{host_uuid}:{ds}" in legend
    assert {e.split(":")[0] for e in legend} == {"AVERAGE", "MIN", "MAX"}
    assert legend.index(f"AVERAGE:host:{host_uuid}:cpu0") == 0  # the host comes first
    times = [t for t, _ in rows]
    assert times == sorted(times, reverse=True)  # newest first
    col = {name: i for i, name in enumerate(legend)}
    memory = int(x.VM_metrics.get_memory_actual(x.VM.get_metrics(vm)))
    cpu = [float(v[col[f"AVERAGE:vm:{uuid}:cpu0"]]) for _, v in rows
           if v[col[f"AVERAGE:vm:{uuid}:cpu0"]] != "NaN"]
    assert cpu and all(0 <= c <= 1 for c in cpu)
    last = rows[0][1]
    assert float(last[col[f"AVERAGE:vm:{uuid}:memory"]]) == memory
    free = float(last[col[f"AVERAGE:vm:{uuid}:memory_internal_free"]])
    assert 0 < free < memory / 1024
    assert 0 <= float(last[col[f"AVERAGE:vm:{uuid}:vbd_xvda_read"]]) <= 1e8
    total = int(x.host_metrics.get_memory_total(x.host.get_metrics(sim.master_ref)))
    assert float(last[col[f"AVERAGE:host:{host_uuid}:memory_total_kib"]]) == total / 1024
    # MIN <= AVERAGE <= MAX, and the host's CPUs vary over time
    for _, v in rows:
        lo, avg, hi = (float(v[col[f"{cf}:host:{host_uuid}:cpu0"]]) for cf in
                       ("MIN", "AVERAGE", "MAX"))
        assert lo <= avg <= hi
    host_cpu = {v[col[f"AVERAGE:host:{host_uuid}:cpu0"]] for _, v in rows}
    assert len(host_cpu) > 1


def test_rrd_updates_archive_choice_and_filters(sim, xapi, x):
    vm = running_vm(x)
    uuid = x.VM.get_uuid(vm)
    now = int(time.time())
    meta, rows, _ = xport(sim, xapi, start=str(now - 3600), interval="60", cf="AVERAGE")
    assert meta["step"] == "60" and 55 <= len(rows) <= 61
    assert {e.split(":")[0] for e in meta["legend"]} == {"AVERAGE"}
    assert not any(e.split(":")[1] == "host" for e in meta["legend"])  # host=true not given
    meta, rows, _ = xport(sim, xapi, start="0")
    assert meta["step"] == "86400" and len(rows) == 366
    meta, rows, _ = xport(sim, xapi, start="-30", vm_uuid=uuid)
    assert meta["step"] == "5" and {e.split(":")[2] for e in meta["legend"]} == {uuid}
    dom0 = x.VM.get_uuid(x.host.get_control_domain(sim.master_ref))
    meta, _, _ = xport(sim, xapi, start="-30")
    assert {e.split(":")[2] for e in meta["legend"]} == {uuid, dom0}


def test_rrd_updates_json(sim, xapi, x):
    for query, headers in (({"json": "true"}, {}), ({}, {"Accept": "*/*"}),
                           ({}, {"Accept": "application/json"})):
        status, h, body = get(url(sim, "/rrd_updates", session_id=xapi._session,
                                  start=str(int(time.time()) - 60), host="true", **query),
                              headers)
        assert status == 200 and h["Content-Type"] == "application/json"
        doc = json.loads(body)
        assert set(doc) == {"meta", "data"}
        assert set(doc["meta"]) == {"start", "step", "end", "rows", "columns", "legend"}
        assert int(doc["meta"]["rows"]) == len(doc["data"])
        row = doc["data"][0]
        assert set(row) == {"t", "values"} and len(row["values"]) == int(doc["meta"]["columns"])
        float(row["values"][0])  # numbers travel as strings, as rrdd writes them
    raw = f"{sim.url}/rrd_updates?session_id={xapi._session}&start=-10&json"
    status, h, _ = get(raw)
    assert h["Content-Type"] == "application/json"
    status, h, _ = get(url(sim, "/rrd_updates", session_id=xapi._session, start="-10"),
                       {"Accept": "text/xml"})
    assert h["Content-Type"] == "text/xml"


def test_rrd_values_are_reproducible(sim, xapi, x):
    from xapisim import rrd_series

    dom0 = x.host.get_control_domain(sim.master_ref)
    a = rrd_series.vm_rrd(sim, dom0, now=1_800_000_000)
    b = rrd_series.vm_rrd(sim, dom0, now=1_800_000_000)
    assert a.current() == b.current()


def test_rrd_updates_needs_start_and_a_session(sim, xapi):
    assert get(url(sim, "/rrd_updates", session_id=xapi._session))[0] == 400
    assert get(url(sim, "/rrd_updates", start="0"))[0] == 401
    assert get(url(sim, "/rrd_updates", session_id=xapi._session, start="0", cf="LAST"))[0] == 500


def test_host_rrd_and_vm_rrd_dumps(sim, xapi, x):
    vm = running_vm(x)
    status, h, body = get(url(sim, "/host_rrd", session_id=xapi._session))
    assert status == 200 and h["Content-Type"] == "text/xml"
    root = ET.fromstring(body)
    assert root.find("step").text == "5"
    names = [d.find("name").text for d in root.findall("ds")]
    assert "memory_free_kib" in names and "loadavg" in names
    rras = root.findall("rra")
    assert [(r.find("cf").text, r.find("pdp_per_row").text) for r in rras[:3]] == [
        ("AVERAGE", "1"), ("MIN", "1"), ("MAX", "1")]
    assert len(rras) == 12
    assert len(rras[0].findall("database/row")) == 120
    assert all(len(r.findall("v")) == len(names) for r in rras[0].findall("database/row"))
    status, h, body = get(url(sim, "/vm_rrd", session_id=xapi._session,
                              uuid=x.VM.get_uuid(vm), json="1"))
    assert status == 200 and h["Content-Type"] == "application/json"
    doc = json.loads(body)
    assert "vbd_xvda_write" in [d["name"] for d in doc["ds"]]
    assert len(doc["rra"]) == 12 and len(doc["rra"][-1]["database"]) == 366
    template = x.VM.get_by_name_label("Debian Bookworm 12")[0]
    assert get(url(sim, "/vm_rrd", session_id=xapi._session,
                   uuid=x.VM.get_uuid(template)))[0] == 404
    assert get(url(sim, "/vm_rrd", session_id=xapi._session, uuid="nope"))[0] == 404


# -- console ------------------------------------------------------------------------------


def rfb_connect(sim, query: dict, method: str = "CONNECT") -> tuple[socket.socket, bytes]:
    u = urllib.parse.urlsplit(sim.url)
    s = socket.create_connection((u.hostname, u.port), timeout=10)
    s.sendall(f"{method} /console?{urllib.parse.urlencode(query)} HTTP/1.0\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    return s, head


def recv_exactly(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        assert chunk, "server closed"
        data += chunk
    return data


def test_console_speaks_rfb(sim, xapi, x):
    dom0 = x.host.get_control_domain(sim.master_ref)
    console = x.VM.get_consoles(dom0)[0]
    s, head = rfb_connect(sim, {"ref": console, "session_id": xapi._session})
    with s:
        assert head.startswith(b"HTTP/1.1 200")
        assert recv_exactly(s, 12) == b"RFB 003.008\n"
        s.sendall(b"RFB 003.008\n")
        assert recv_exactly(s, 2) == b"\x01\x01"  # one security type: None
        s.sendall(b"\x01")
        assert recv_exactly(s, 4) == b"\0\0\0\0"
        s.sendall(b"\x01")  # ClientInit, shared
        width, height = struct.unpack(">HH", recv_exactly(s, 4))
        recv_exactly(s, 16)
        (length,) = struct.unpack(">I", recv_exactly(s, 4))
        assert recv_exactly(s, length) == x.VM.get_name_label(dom0).encode()
        s.sendall(struct.pack(">BxHi", 2, 1, 0))  # SetEncodings: raw
        s.sendall(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
        header = recv_exactly(s, 4 + 12)
        assert header[0] == 0
        frame = b"".join(rfb_rectangles(s, header))
        assert len(frame) == width * height * 4
        # default pixel format: little-endian xRGB, so B, G, R, x in memory;
        # the top left corner is the background colour, not black
        assert frame[:3] == bytes((128, 64, 24))


def rfb_rectangles(s: socket.socket, header: bytes):
    """The pixels of a raw-encoded FramebufferUpdate whose 4-byte header and
    first 12-byte rectangle header are ``header``."""
    count = struct.unpack(">H", header[2:4])[0]
    rect = header[4:]
    for i in range(count):
        if i:
            rect = recv_exactly(s, 12)
        _x, _y, w, h, enc = struct.unpack(">HHHHi", rect)
        assert enc == 0
        yield recv_exactly(s, w * h * 4)


def test_console_by_vm_ref_with_get_and_rfb_3_3(sim, xapi, x):
    dom0 = x.host.get_control_domain(sim.master_ref)
    s, head = rfb_connect(sim, {"ref": dom0, "session_id": xapi._session}, "GET")
    with s:
        assert head.startswith(b"HTTP/1.1 200")
        assert recv_exactly(s, 12) == b"RFB 003.008\n"
        s.sendall(b"RFB 003.003\n")
        assert recv_exactly(s, 4) == b"\0\0\0\x01"  # 3.3: the server picks None


def test_console_of_a_halted_vm_is_404(sim, xapi, x):
    vm = make_vm(x, "halted")
    console = rfb_console(sim, x, vm)
    for ref in (console, vm):
        s, head = rfb_connect(sim, {"ref": ref, "session_id": xapi._session})
        s.close()
        assert head.startswith(b"HTTP/1.1 404")
    s, head = rfb_connect(sim, {"ref": console})
    s.close()
    assert head.startswith(b"HTTP/1.1 401")


def rfb_console(sim, x, vm: str) -> str:
    """The VM's rfb console. xapi makes one when the VM starts; until the
    simulator's VM.start does too, the test adds it to the object store
    (console.create cannot set VM and protocol: they are runtime fields)."""
    for c in x.VM.get_consoles(vm):
        if x.console.get_protocol(c) == "rfb":
            return c
    return sim.store.create("console", {"VM": vm, "protocol": "rfb"})


def test_console_waits_for_the_vm_to_run(sim, xapi, x):
    vm = running_vm(x)
    console = rfb_console(sim, x, vm)
    s, head = rfb_connect(sim, {"uuid": x.VM.get_uuid(vm), "session_id": xapi._session})
    with s:
        assert head.startswith(b"HTTP/1.1 200")
        assert recv_exactly(s, 12) == b"RFB 003.008\n"
    x.VM.hard_shutdown(vm)
    wait_for(lambda: x.VM.get_power_state(vm) == "Halted")
    s, head = rfb_connect(sim, {"ref": console, "session_id": xapi._session})
    s.close()
    assert head.startswith(b"HTTP/1.1 404")


def test_imported_data_follows_clone_and_goes_with_destroy(sim, xapi, x):
    vdi = new_vdi(x, 2 * MiB)
    data = os.urandom(2 * MiB)
    assert upload(sim, xapi, vdi, data) == "success"
    clone = x.VDI.clone(vdi, {})
    assert export(sim, xapi, clone) == data
    uuid = x.VDI.get_uuid(clone)
    x.VDI.destroy(clone)
    assert not (sim.state_dir / "vdis" / f"{uuid}.raw").exists()
    assert export(sim, xapi, vdi) == data
