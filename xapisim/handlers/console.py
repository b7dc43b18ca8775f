"""GET or CONNECT /console?ref=<console or VM ref>&session_id=... (also
``uuid=``): xapi's VNC console tunnel. After ``200 OK`` the connection
carries RFB; here a small RFB server answers it: version 3.8 (3.3 and 3.7
clients too), security "None", a 640x480 true-colour desktop named after
the VM, showing the VM's name-label, uuid and a seconds counter
(xapisim.framebuffer), raw-encoded in the viewer's pixel format. A
non-incremental update request gets the requested area; an incremental one
waits for the next tick of the counter (at most a second) and gets the
status line, so an idle viewer polls at 1 Hz, not in a busy loop.

As xapi, 404 when the VM is not running, or not running on the host that
received the request (a VM's console location names its host).
"""

from __future__ import annotations

import struct
import time

from xapisim import framebuffer
from xapisim.errors import XenAPIError
from xapisim.handlers import route
from xapisim.handlers.http_task import fault_gate

WIDTH, HEIGHT = framebuffer.WIDTH, framebuffer.HEIGHT
IDLE_TIMEOUT = 300.0
# rows per rectangle of an update: bounds the bytes built at once
BAND_ROWS = 32
# client message type -> bytes that follow the type byte (fixed part)
_FIXED = {0: 19, 3: 9, 4: 7, 5: 5}


def _console_of(sim, query: dict[str, str]) -> str | None:
    """The console the request names: a console ref, a VM ref (its rfb
    console), or a uuid of either."""
    store = sim.store
    with store.lock:
        ref = query.get("ref")
        if ref is None and "uuid" in query:
            for cls in ("VM", "console"):
                try:
                    ref = store.ref_of_uuid(cls, query["uuid"])
                    break
                except XenAPIError:
                    continue
        if ref is None:
            return None
        if store.has("console", ref):
            return ref
        if store.has("VM", ref):
            for c in store.raw("VM", ref)["consoles"]:
                if store.has("console", c) and store.raw("console", c)["protocol"] == "rfb":
                    return c
    return None


def _serve(req) -> None:
    if not fault_gate(req):
        return
    sim = req.sim
    own = "session_id" not in req.query
    session = req.session()
    if session is None:
        return
    try:
        store = sim.store
        console = _console_of(sim, req.query)
        if console is None:
            req.send_error(404, "no such console")
            return
        with store.lock:
            vm = store.raw("console", console)["VM"]
            rec = store.raw("VM", vm) if store.has("VM", vm) else None
            ok = rec is not None and rec["power_state"] == "Running" and \
                rec["resident_on"] == req.host_ref
            name = rec["name_label"] if rec else ""
            vm_uuid = rec["uuid"] if rec else ""
        if not ok:
            req.send_error(404, "VM not running here")
            return
        req.send_headers(200, {})
        req.close_connection()
        req.connection.settimeout(IDLE_TIMEOUT)
        try:
            Rfb(req.rfile, req.wfile, name, vm_uuid).run()
        except (OSError, ValueError, struct.error):
            pass  # the viewer went away or spoke nonsense: end of tunnel
    finally:
        if own:
            sim.sessions.destroy(session)


@route("GET", "/console")
def console_get(req) -> None:
    _serve(req)


@route("CONNECT", "/console")
def console_connect(req) -> None:
    _serve(req)


class Rfb:
    """Enough of an RFB server for a viewer (noVNC, vncviewer) to connect
    and show the VM's screen."""

    def __init__(self, rfile, wfile, name: str, vm_uuid: str = ""):
        self.rfile = rfile
        self.wfile = wfile
        self.name = (name or "xapi-sim console").encode()[:255]
        self.format = framebuffer.PixelFormat()
        self.opened = time.monotonic()
        self.shown = 0  # the counter value the viewer has seen
        self.screen = framebuffer.render(name, vm_uuid, 0)

    def _read(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if len(data) != n:
            raise OSError("viewer closed")
        return data

    def _write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def _handshake(self) -> None:
        self._write(b"RFB 003.008\n")
        version = self._read(12)
        if not version.startswith(b"RFB 003."):
            raise ValueError("not an RFB viewer")
        minor = int(version[8:11])
        if minor >= 7:
            self._write(b"\x01\x01")  # one security type: None
            if self._read(1) != b"\x01":
                raise ValueError("viewer refused security type None")
            if minor >= 8:
                self._write(struct.pack(">I", 0))  # SecurityResult: OK
        else:
            self._write(struct.pack(">I", 1))  # 3.3: the server decides: None
        self._read(1)  # ClientInit (shared flag)
        self._write(struct.pack(">HH", WIDTH, HEIGHT) + self.format.pack() +
                    struct.pack(">I", len(self.name)) + self.name)

    def run(self) -> None:
        self._handshake()
        while True:
            kind = self._read(1)[0]
            if kind == 0:  # SetPixelFormat
                fmt = framebuffer.PixelFormat.unpack(self._read(_FIXED[0])[3:])
                fmt.raw_mode()  # refuses (ValueError) what cannot be served
                self.format = fmt
            elif kind == 2:  # SetEncodings: raw is always allowed, and all we send
                _pad, count = struct.unpack(">BH", self._read(3))
                self._read(4 * count)
            elif kind == 3:
                incremental, x, y, w, h = struct.unpack(">BHHHH", self._read(_FIXED[3]))
                if incremental:
                    self._tick()
                else:
                    self._update((x, y, x + w, y + h))
            elif kind == 6:  # ClientCutText
                _pad, length = struct.unpack(">3sI", self._read(7))
                self._read(length)
            elif kind in _FIXED:  # key and pointer events: the screen ignores them
                self._read(_FIXED[kind])
            else:
                raise ValueError(f"unknown RFB client message {kind}")

    def _seconds(self) -> int:
        return int(time.monotonic() - self.opened)

    def _tick(self) -> None:
        """Answer an incremental request once the counter has moved on."""
        wait = self.opened + self.shown + 1 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.shown = self._seconds()
        framebuffer.draw_status(self.screen, self.shown)
        self._update(framebuffer.STATUS_BOX)

    def _update(self, box: tuple[int, int, int, int]) -> None:
        """One FramebufferUpdate with ``box`` (clipped to the screen) as
        raw rectangles of at most BAND_ROWS rows each."""
        left, top = min(box[0], WIDTH), min(box[1], HEIGHT)
        right, bottom = min(max(box[2], left), WIDTH), min(max(box[3], top), HEIGHT)
        bands = [(t, min(t + BAND_ROWS, bottom)) for t in range(top, bottom, BAND_ROWS)] \
            if right > left else []
        self.wfile.write(struct.pack(">BxH", 0, len(bands)))
        for t, b in bands:
            self.wfile.write(struct.pack(">HHHHi", left, t, right - left, b - t, 0))
            self.wfile.write(framebuffer.pixels(self.screen, (left, t, right, b), self.format))
        self.wfile.flush()
