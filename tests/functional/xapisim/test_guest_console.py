"""A simulated guest's console, over real HTTP and the official SDK: the
RFB framebuffer shows the VM (in the viewer's pixel format, updated on
incremental requests), and the console log the guest writes as it boots,
reboots and crashes, read back through the shipped console_log dom0
plugin with its strict argument checks."""

from __future__ import annotations

import base64
import socket
import struct
import time
import urllib.parse

from simvm import failure, make_vm, wait_for

from xapisim.control_client import SimControl

BACKGROUND = (24, 64, 128)


def _recv(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        assert chunk, "server closed"
        data += chunk
    return data


def _open_rfb(sim, session: str, vm_uuid: str) -> tuple[socket.socket, int, int, bytes]:
    u = urllib.parse.urlsplit(sim.url)
    s = socket.create_connection((u.hostname, u.port), timeout=10)
    query = urllib.parse.urlencode({"uuid": vm_uuid, "session_id": session})
    s.sendall(f"CONNECT /console?{query} HTTP/1.0\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += _recv(s, 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert _recv(s, 12) == b"RFB 003.008\n"
    s.sendall(b"RFB 003.008\n")
    assert _recv(s, 2) == b"\x01\x01"
    s.sendall(b"\x01")
    assert _recv(s, 4) == bytes(4)
    s.sendall(b"\x01")
    width, height = struct.unpack(">HH", _recv(s, 4))
    _recv(s, 16)
    (n,) = struct.unpack(">I", _recv(s, 4))
    return s, width, height, _recv(s, n)


def _update(s: socket.socket) -> list[tuple[int, int, int, int, bytes]]:
    head = _recv(s, 4)
    assert head[0] == 0
    (count,) = struct.unpack(">H", head[2:])
    rects = []
    for _ in range(count):
        x, y, w, h, enc = struct.unpack(">HHHHi", _recv(s, 12))
        assert enc == 0
        rects.append((x, y, w, h, _recv(s, w * h * 4)))
    return rects


def test_framebuffer_shows_the_vm_in_the_viewers_pixel_format(sim, xapi):
    x = xapi.xenapi
    vm = make_vm(x, "web-frontend-01")
    x.VM.start(vm, False, False)
    s, width, height, name = _open_rfb(sim, xapi._session, x.VM.get_uuid(vm))
    with s:
        assert name == b"web-frontend-01" and (width, height) == (640, 480)
        # noVNC's choice: R, G, B, x in memory (red shift 0, blue 16)
        s.sendall(struct.pack(">B3xBBBBHHHBBB3x", 0, 32, 24, 0, 1, 255, 255, 255, 0, 8, 16))
        s.sendall(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
        rects = _update(s)
        frame = b"".join(r[4] for r in sorted(rects, key=lambda r: r[1]))
        assert sum(r[3] for r in rects) == height and len(frame) == width * height * 4
        pixels = [tuple(frame[i:i + 3]) for i in range(0, len(frame), 4)]
        assert pixels[0] == BACKGROUND
        # the name-label is drawn in white in the upper half: a band of rows
        # 110..180 holds white pixels, the rows above it none
        white = [i for i, p in enumerate(pixels) if p == (255, 255, 255)]
        rows = {i // width for i in white}
        assert rows and min(rows) >= 110 and max(rows) < 260
        assert len([r for r in rows if 110 <= r < 180]) > 20

        # an incremental request is answered within about a second, with
        # the status line (the seconds counter) only
        started = time.monotonic()
        s.sendall(struct.pack(">BBHHHH", 3, 1, 0, 0, width, height))
        rects = _update(s)
        assert time.monotonic() - started < 2.5
        assert rects and all(r[1] >= height - 48 for r in rects)
        status = b"".join(r[4] for r in rects)
        assert any(tuple(status[i:i + 3]) == (255, 200, 0) for i in range(0, len(status), 4))


def test_unsupported_pixel_format_ends_the_session(sim, xapi):
    x = xapi.xenapi
    vm = make_vm(x, "eight-bit")
    x.VM.start(vm, False, False)
    s, *_ = _open_rfb(sim, xapi._session, x.VM.get_uuid(vm))
    with s:
        s.sendall(struct.pack(">B3xBBBBHHHBBB3x", 0, 8, 8, 0, 1, 7, 7, 3, 0, 3, 6))
        s.sendall(struct.pack(">BBHHHH", 3, 0, 0, 0, 640, 480))
        assert s.recv(1) == b""  # closed, not a frame in a format it cannot honour


def _tail(x, host: str, **args: str) -> bytes:
    return base64.b64decode(x.host.call_plugin(host, "console_log", "tail", args))


def test_guests_write_console_logs_as_they_boot_reboot_and_crash(sim, xapi):
    x = xapi.xenapi
    host = sim.master_ref
    vm = make_vm(x, "logger")
    x.VM.start(vm, False, False)
    first = x.VM.get_domid(vm)
    log = _tail(x, host, dom_id=first).decode()
    assert "Linux version" in log and log.rstrip().endswith("logger login:")

    x.VM.clean_reboot(vm)
    second = x.VM.get_domid(vm)
    assert second != first
    assert "reboot: Restarting system" in _tail(x, host, dom_id=first).decode()
    assert "logger login:" in _tail(x, host, dom_id=second).decode()

    x.VM.set_actions_after_crash(vm, "preserve")
    SimControl(sim.url).crash_vm(x.VM.get_uuid(vm))
    wait_for(lambda: x.VM.get_power_state(vm) == "Paused")
    crashed = _tail(x, host, dom_id=second).decode()
    assert "Kernel panic - not syncing" in crashed
    assert crashed.index("login:") < crashed.index("Kernel panic")
    # the tail is bounded by max_bytes and is the end of the log
    assert _tail(x, host, dom_id=second, max_bytes="40") == crashed.encode()[-40:]


def test_console_log_plugin_checks_its_arguments(sim, xapi):
    x = xapi.xenapi
    host = sim.master_ref
    call = x.host.call_plugin
    assert failure(call, host, "console_log", "tail", {}) == \
        ["INVALID_INPUT", "dom_id", "is required"]
    for bad in ("0", "-1", "32752", "1e3", "../1", " 1", "١"):
        code, field, _ = failure(call, host, "console_log", "tail", {"dom_id": bad})
        assert (code, field) == ("INVALID_INPUT", "dom_id"), bad
    for bad in ("0", "102401", "x"):
        code, field, _ = failure(call, host, "console_log", "tail",
                                 {"dom_id": "1", "max_bytes": bad})
        assert (code, field) == ("INVALID_INPUT", "max_bytes"), bad
    assert failure(call, host, "console_log", "tail", {"dom_id": "1", "path": "/etc"}) == \
        ["INVALID_INPUT", "path", "is not an argument of console_log.tail"]
    assert failure(call, host, "console_log", "tail", {"dom_id": "4000"}) == \
        ["CONSOLE_LOG_NOT_FOUND", "4000"]
