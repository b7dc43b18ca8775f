"""compute-agent-novncproxy for real: a headless Chromium (Debian's, driven
by Selenium) opens noVNC through the proxy, which claims the token in the
database (SQLite), logs in to the simulator over verified TLS and relays
the VM's RFB console; the canvas's pixels are compared with the VM's
screen. Wrong, expired and replayed tokens are refused with no connection
to dom0 (no CONNECT /console, no login, counted at the simulator)."""

from __future__ import annotations

import io
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import XenAPI
from novnc_fixtures import ProxyProcess, chromium, token_path, websocket_upgrade, ws_read_frame
from PIL import Image

from compute_agent.console.tokens import ConsoleTokens
from compute_agent.db.api import Database
from compute_agent.driver.xenapi.transport import TLSSettings, make_transport
from tests.functional.harness import (
    PASSWORD,
    USER,
    db_sync,
    free_port,
    running_simulator,
    wait_until,
    write_config,
)
from tests.functional.xapisim.simvm import make_vm
from xapisim import framebuffer
from xapisim.control_client import SimControl

NOVNC_WEB = "/usr/share/novnc"


@dataclass
class Env:
    sim: object
    x: object
    db: Database
    tokens: ConsoleTokens
    proxy: ProxyProcess
    ctl: SimControl


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with running_simulator(tls=True, task_duration=0.0) as sim:
        port = free_port()
        db_url = f"sqlite:///{tmp_path}/agent.sqlite"
        config = write_config(tmp_path / "proxy.conf", {
            "DEFAULT": {"host": "console-host", "log_file": tmp_path / "proxy.log",
                        "debug": "true"},
            "database": {"connection": db_url},
            "xenserver": {"connection_url": sim.url, "connection_username": USER,
                          "connection_password": PASSWORD, "ca_file": sim.ca_file},
            "console": {"novncproxy_host": "127.0.0.1", "novncproxy_port": port,
                        "novnc_web": NOVNC_WEB},
        })
        db_sync(config)
        db = Database(db_url)
        tls = TLSSettings(ca_file=sim.ca_file)
        session = XenAPI.Session(sim.url, transport=make_transport(sim.url, 30, tls))
        session.xenapi.login_with_password(USER, PASSWORD, "2.0", "console-tests")
        proxy = ProxyProcess(config, port, tmp_path).start()
        try:
            yield Env(sim, session.xenapi, db, ConsoleTokens(db), proxy,
                      SimControl(sim.url, ca_file=sim.ca_file))
        finally:
            proxy.stop()
            session.xenapi.session.logout()
            db.dispose()


def running_instance(env: Env, name: str) -> tuple[str, str, str]:
    """(instance uuid, VM uuid, console location) of a running VM."""
    x = env.x
    vm = make_vm(x, name)
    x.VM.start(vm, False, False)
    uuid = str(uuidlib.uuid4())
    env.db.create_instance({"uuid": uuid, "name": name, "host": "console-host",
                            "vm_state": "active", "power_state": 1})
    console = next(c for c in x.VM.get_consoles(vm) if x.console.get_protocol(c) == "rfb")
    return uuid, x.VM.get_uuid(vm), x.console.get_location(console)


def dom0_traffic(env: Env) -> tuple[int, int]:
    """(CONNECT /console requests, sessions) at the simulator."""
    return (env.ctl.http_requests("/console"), env.ctl.state()["sessions"])


def test_browser_shows_the_vm_screen(env: Env):
    uuid, vm_uuid, location = running_instance(env, "browser-vm-42")
    issued = env.tokens.issue(uuid, "console-host", location, ttl=120)
    url = (f"http://127.0.0.1:{env.proxy.port}/vnc_lite.html?"
           f"path=websockify%3Ftoken%3D{issued['token']}")
    browser = chromium()
    try:
        browser.get(url)
        expected = framebuffer.render("browser-vm-42", vm_uuid)
        top = (0, 0, framebuffer.WIDTH, framebuffer.STATUS_BOX[1])

        def screen() -> Image.Image | None:
            canvases = browser.find_elements("css selector", "#screen canvas")
            if not canvases or canvases[0].size["width"] != framebuffer.WIDTH:
                return None
            img = Image.open(io.BytesIO(canvases[0].screenshot_as_png)).convert("RGB")
            # drawn: the background colour in the corner, not noVNC's grey
            return img if img.getpixel((2, 2)) == framebuffer.BACKGROUND else None

        shot = wait_until(screen, 30, "noVNC to draw the VM's screen", 0.2)
        assert shot.size == (framebuffer.WIDTH, framebuffer.HEIGHT)
        got, want = shot.crop(top).tobytes(), expected.crop(top).tobytes()
        same = sum(1 for i in range(0, len(want), 3) if got[i:i + 3] == want[i:i + 3])
        # the VM's name-label and uuid, pixel for pixel
        assert same / (len(want) // 3) > 0.999
        text = [p for p in shot.crop(top).getdata() if p == framebuffer.FOREGROUND]
        assert len(text) > 500
        status = browser.find_element("id", "status").text
        assert "Connected" in status
    finally:
        browser.quit()
    # the token is spent: a second page load is refused
    assert websocket_upgrade(env.proxy.port, token_path(issued["token"]))[0] == 403


def test_bad_tokens_never_reach_dom0(env: Env):
    uuid, _vm_uuid, location = running_instance(env, "guarded")
    expired = env.tokens.issue(uuid, "console-host", location, ttl=1)
    good = env.tokens.issue(uuid, "console-host", location, ttl=120)
    time.sleep(1.1)
    before = dom0_traffic(env)
    for path in (token_path("not-a-token"), token_path(expired["token"]), "/websockify",
                 token_path("x" * 500)):
        status, s = websocket_upgrade(env.proxy.port, path)
        s.close()
        assert status == 403, path
    assert dom0_traffic(env) == before

    # the good token once: RFB from the VM comes through the websocket
    status, s = websocket_upgrade(env.proxy.port, token_path(good["token"]))
    with s:
        assert status == 101
        assert ws_read_frame(s) == b"RFB 003.008\n"
    wait_until(lambda: env.ctl.http_requests("/console") == before[0] + 1, 10,
               "the proxy's CONNECT")
    # and never again: replay refused before dom0
    wait_until(lambda: dom0_traffic(env)[1] == before[1], 10, "the proxy to log out")
    status, s = websocket_upgrade(env.proxy.port, token_path(good["token"]))
    s.close()
    assert status == 403
    assert dom0_traffic(env) == (before[0] + 1, before[1])
