"""``python -m compute_agent.demo`` (``make demo``): the whole agent on
embedded defaults.

The dom0 simulator (xapisim) runs in-process over real HTTP, the database is
SQLite in a temporary directory, RPC and notifications use oslo.messaging's
in-process ``fake://`` transport, and the agent's service (RPC server,
manager, XenAPI driver, periodic jobs) runs in this process. A client using
the same ComputeAPI a scheduler would boots three instances and walks them
through stop, start, soft and hard reboot and delete, printing every state
change; it also boots twice from an image served over in-process HTTP, the
second time from the per-SR image cache (demo_images.py), and walks two
instances through pause, suspend, rescue, resize + confirm and resize +
revert, then shows an action history, console output, diagnostics and a
port attached and detached
(demo_lifecycle.py). At the end the
simulator's VMs and disks are checked against the database. Exit status 0
when everything matched.
"""

from __future__ import annotations

from compute_agent.process import concurrency

concurrency.setup(concurrency.THREADING)

import argparse  # noqa: E402 - the backend must be chosen before anything else
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid as uuidlib  # noqa: E402
from typing import Any  # noqa: E402

import oslo_messaging  # noqa: E402

from compute_agent import exceptions  # noqa: E402
from compute_agent.conf import CONF  # noqa: E402
from compute_agent.db import migration  # noqa: E402
from compute_agent.db.api import Database  # noqa: E402
from compute_agent.demo_images import image_builds  # noqa: E402
from compute_agent.demo_lifecycle import (  # noqa: E402
    lifecycle_steps,
    show_actions,
    show_console_and_diagnostics,
    show_port,
)
from compute_agent.driver import power_state  # noqa: E402
from compute_agent.process.log_setup import register_options, setup_logging  # noqa: E402
from compute_agent.rpc import transport as rpc_transport  # noqa: E402
from compute_agent.rpc.rpcapi import ComputeAPI  # noqa: E402
from compute_agent.service import ComputeService  # noqa: E402

HOST = "demo-host"
SIM_USER, SIM_PASSWORD = "root", "password"
SETTLE_S = 60
XAPI_POWER = {"Running": power_state.RUNNING, "Halted": power_state.SHUTDOWN,
              "Paused": power_state.PAUSED, "Suspended": power_state.SUSPENDED}

FLAVORS = [
    {"vcpus": 1, "memory_mb": 512, "root_gb": 1},
    {"vcpus": 2, "memory_mb": 1024, "root_gb": 2},
    {"vcpus": 4, "memory_mb": 2048, "root_gb": 4},
]


class Printer:
    """Prints one table row per observed state change."""

    HEADER = ("time", "instance", "vm_state", "task_state", "power", "progress", "fault")

    def __init__(self, names: dict[str, str]):
        self.names = names
        self.start = time.monotonic()
        self.last: dict[str, tuple] = {}
        self.widths = (7, 8, 9, 15, 9, 8, 0)

    def header(self) -> None:
        self._line(self.HEADER)
        self._line(tuple("-" * w if w else "-----" for w in self.widths))

    def step(self, title: str) -> None:
        print(f"\n==> {title}", flush=True)

    def note(self, text: str) -> None:
        print(f"    {text}", flush=True)

    def observe(self, inst: dict[str, Any]) -> None:
        fault = inst.get("fault")
        state = (inst["vm_state"], inst["task_state"] or "-",
                 power_state.name(inst["power_state"]), f"{inst['progress']}%",
                 f"{fault['code']} {fault['params']}" if fault else "")
        if self.last.get(inst["uuid"]) == state:
            return
        self.last[inst["uuid"]] = state
        elapsed = f"{time.monotonic() - self.start:6.2f}s"
        self._line((elapsed, self.names.get(inst["uuid"], inst["uuid"][:8])) + state)

    def _line(self, cells: tuple) -> None:
        print("  ".join(str(c).ljust(w) for c, w in zip(cells, self.widths, strict=True))
              .rstrip(), flush=True)


class Demo:
    def __init__(self, driver_name: str):
        self.driver_name = driver_name
        self.workdir = tempfile.TemporaryDirectory(prefix="compute-agent-demo-")
        self.sim: Any = None
        self.service: ComputeService | None = None
        self.notifications: list[str] = []
        self._listener: Any = None

    # -- set-up ------------------------------------------------------------------
    def start(self) -> ComputeAPI:
        path = self.workdir.name
        register_options(CONF)
        rpc_transport.register_opts(CONF)
        CONF([], project="compute-agent", default_config_files=[])
        db_url = f"sqlite:///{path}/compute-agent.sqlite"
        overrides = {
            "host": HOST, "state_path": path, "transport_url": "fake:///",
            "compute_driver": self.driver_name, "report_interval": 1,
            "log_file": f"{path}/compute-agent.log", "debug": False,
        }
        for name, value in overrides.items():
            CONF.set_override(name, value)
        CONF.set_override("connection", db_url, group="database")
        CONF.set_override("driver", ["messagingv2"], group="oslo_messaging_notifications")
        CONF.set_override("topics", ["demo_notifications"], group="oslo_messaging_notifications")
        if self.driver_name == "xenapi":
            from xapisim.server import Simulator

            self.sim = Simulator(hosts=1, task_duration=0.5)
            self.sim.start()
            CONF.set_override("connection_url", self.sim.url, group="xenserver")
            CONF.set_override("connection_username", SIM_USER, group="xenserver")
            CONF.set_override("connection_password", SIM_PASSWORD, group="xenserver")
        setup_logging(CONF)
        migration.upgrade(db_url)
        transport = rpc_transport.get_rpc_transport(CONF)
        self._listen_notifications()
        self.service = ComputeService(CONF, rpc_transport_obj=transport)
        self.service.start()
        self.db = Database(db_url)
        return ComputeAPI(CONF, rpc_transport=transport, timeout=30)

    def _listen_notifications(self) -> None:
        demo = self

        class Endpoint:
            def info(self, ctxt, publisher_id, event_type, payload, metadata):
                demo.notifications.append(event_type)

            def error(self, ctxt, publisher_id, event_type, payload, metadata):
                demo.notifications.append(event_type)

        self._listener = oslo_messaging.get_notification_listener(
            rpc_transport.get_notification_transport(CONF),
            [oslo_messaging.Target(topic="demo_notifications")], [Endpoint()])
        self._listener.start()

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
        if self._listener is not None:
            self._listener.stop()
            self._listener.wait()
        rpc_transport.cleanup()
        if self.sim is not None:
            self.sim.stop()
        self.workdir.cleanup()

    # -- the checks against dom0 ---------------------------------------------------
    def dom0_view(self) -> tuple[dict[str, int], int]:
        """Instance uuid -> power state of the agent's VMs in the simulator,
        and how many agent-made disks exist there (over XenAPI, as any client)."""
        import XenAPI

        from compute_agent.driver.xenapi import ownership

        session = XenAPI.Session(self.sim.url)
        session.xenapi.login_with_password(SIM_USER, SIM_PASSWORD, "1.0", "compute-agent-demo")
        try:
            vms = {}
            for rec in session.xenapi.VM.get_all_records().values():
                if rec["is_a_template"] or rec["is_control_domain"]:
                    continue
                owner = ownership.instance_of(rec)
                if owner:
                    vms[owner] = XAPI_POWER.get(rec["power_state"], power_state.NOSTATE)
            disks = sum(1 for rec in session.xenapi.VDI.get_all_records().values()
                        if ownership.instance_of(rec))
        finally:
            session.xenapi.session.logout()
        return vms, disks


def wait_settled(api: ComputeAPI, printer: Printer, uuids: list[str],
                 want: dict[str, str]) -> dict[str, dict]:
    """Poll until every instance reached its wanted vm_state with no task."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        current = {}
        for uuid in uuids:
            try:
                current[uuid] = api.get_instance(HOST, uuid)
            except exceptions.InstanceNotFound:
                continue  # a build cast not consumed yet
            printer.observe(current[uuid])
        if all(u in current and current[u]["task_state"] is None
               and current[u]["vm_state"] == want[u] for u in uuids):
            return current
        if time.monotonic() > deadline:
            raise RuntimeError(f"instances did not settle within {SETTLE_S} s")
        time.sleep(0.05)


def run(driver_name: str) -> int:
    demo = Demo(driver_name)
    api = demo.start()
    ok = True
    try:
        where = (f"xapisim dom0 at {demo.sim.url} (task duration 0.5 s)" if demo.sim
                 else "the in-memory fake driver")
        print(f"compute-agent demo: agent '{HOST}' on {where}, SQLite in "
              f"{demo.workdir.name}, RPC over fake://")
        print(f"ping: {api.ping(HOST)}")
        names = {}
        bodies = []
        for i, flavor in enumerate(FLAVORS, 1):
            body = {"uuid": str(uuidlib.uuid4()), "name": f"demo-{i}", "flavor": flavor,
                    "image": {"id": None, "url": None, "disk_format": None},
                    "networks": [], "metadata": {"purpose": "demo"}}
            names[body["uuid"]] = body["name"]
            bodies.append(body)
        uuids = [b["uuid"] for b in bodies]
        a, b, c = uuids
        printer = Printer(names)

        printer.step("boot demo-1, demo-2, demo-3 (build_instance casts)")
        printer.header()
        for body in bodies:
            api.build_instance(HOST, body)
        # While demo-1 builds, a conflicting request is refused, not queued.
        try:
            api.reboot_instance(HOST, a, "HARD", confirm=True)
        except exceptions.ComputeAgentError as exc:
            printer.note(f"reboot of demo-1 while building refused: {exc.code} {exc.params}")
        state = dict.fromkeys(uuids, "active")
        wait_settled(api, printer, uuids, state)
        ok &= check_dom0(demo, printer, state)

        if demo.sim is not None:
            printer.step("boot from an image over HTTP, then again from the image cache")
            cached, img_uuids = image_builds(
                api, HOST, printer,
                lambda us, want: wait_settled(api, printer, us, want), names)
            ok &= cached
            for uuid in img_uuids:
                api.terminate_instance(HOST, uuid)
            wait_settled(api, printer, img_uuids, dict.fromkeys(img_uuids, "deleted"))

        steps = [
            ("stop demo-1 (clean) and demo-2 (hard)", [
                lambda: api.stop_instance(HOST, a, clean=True),
                lambda: api.stop_instance(HOST, b, clean=False)], {a: "stopped", b: "stopped"}),
            ("start demo-1", [lambda: api.start_instance(HOST, a)], {a: "active"}),
            ("reboot demo-3 soft, then demo-1 hard", [
                lambda: api.reboot_instance(HOST, c, "SOFT", confirm=True),
                lambda: api.reboot_instance(HOST, a, "HARD", confirm=True)],
             {a: "active", c: "active"}),
            ("hard reboot of the stopped demo-2 starts it",
             [lambda: api.reboot_instance(HOST, b, "HARD", confirm=True)], {b: "active"}),
        ]
        for title, calls, targets in steps:
            printer.step(title)
            for call in calls:
                call()
            state.update(targets)
            wait_settled(api, printer, uuids, state)
        ok &= check_dom0(demo, printer, state)

        def settle(targets: dict[str, str]) -> None:
            state.update(targets)
            wait_settled(api, printer, uuids, state)

        ok &= lifecycle_steps(api, HOST, printer, settle,
                              lambda: check_dom0(demo, printer, state), a, b)
        ok &= show_actions(api, HOST, printer, a, "demo-1")
        show_console_and_diagnostics(api, HOST, printer, c, "demo-3")
        ok &= show_port(api, HOST, printer, c, "demo-3")

        printer.step("refusals are structured errors")
        for label, call in (
            ("start of the running demo-1", lambda: api.start_instance(HOST, a, confirm=True)),
            ("get of an unknown uuid", lambda: api.get_instance(HOST, str(uuidlib.uuid4()))),
            ("build with a bad flavor", lambda: api.build_instance(
                HOST, {**bodies[0], "uuid": str(uuidlib.uuid4()),
                       "flavor": {"vcpus": "two", "memory_mb": 1, "root_gb": 1}})),
        ):
            try:
                call()
                printer.note(f"{label}: accepted?!")
                ok = False
            except exceptions.ComputeAgentError as exc:
                printer.note(f"{label}: {exc.code} {exc.params}")

        printer.step("delete all three")
        for uuid in uuids:
            api.terminate_instance(HOST, uuid)
        state = dict.fromkeys(uuids, "deleted")
        wait_settled(api, printer, uuids, state)
        ok &= check_dom0(demo, printer, state)

        printer.step("summary")
        actions = sum(len(demo.db.list_actions(u)) for u in uuids)
        tasks = len(demo.db.list_tracked_tasks(status=None))
        status = api.get_host_status(HOST)
        printer.note(f"{actions} instance actions recorded, {tasks} dom0 tasks tracked, "
                     f"{len(demo.notifications)} notifications "
                     f"({len(set(demo.notifications))} event types)")
        printer.note(f"host {HOST}: {status['resources']['free_memory_mb']} MB free of "
                     f"{status['resources']['memory_mb']}, service alive: "
                     f"{status['service']['alive']}")
        printer.note(f"agent log: {CONF.log_file} (removed on exit)")
        print("\nOK: the simulator and the database agree" if ok
              else "\nFAILED: the simulator and the database disagree")
        return 0 if ok else 1
    finally:
        demo.stop()


def check_dom0(demo: Demo, printer: Printer, state: dict[str, str]) -> bool:
    """The simulator's VMs and disks against the database."""
    db_view = {i["uuid"]: i["power_state"] for i in demo.db.list_instances(host=HOST)}
    if demo.sim is None:
        printer.note(f"database: {len(db_view)} live instances (fake driver: no dom0 to check)")
        return True
    vms, disks = demo.dom0_view()
    live = [u for u, s in state.items() if s != "deleted"]
    agree = vms == db_view and sorted(vms) == sorted(live) and disks == len(live)
    printer.note(f"dom0 check: {len(vms)} VMs {sorted(power_state.name(p) for p in vms.values())},"
                 f" {disks} disks; database: {len(db_view)} instances -> "
                 f"{'match' if agree else 'MISMATCH'}")
    if not agree:
        printer.note(f"dom0 {vms} / database {db_view} / disks {disks}")
    return agree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compute_agent.demo",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--driver", choices=["xenapi", "fake"], default=None,
                        help="default: xenapi against the simulator when available")
    args = parser.parse_args(argv)
    driver = args.driver or default_driver()
    watchdog = threading.Timer(300, lambda: (print("demo timed out", file=sys.stderr),
                                             sys.stderr.flush(), _hard_exit()))
    watchdog.daemon = True
    watchdog.start()
    try:
        return run(driver)
    finally:
        watchdog.cancel()


def default_driver() -> str:
    try:
        import compute_agent.driver.xenapi.driver  # noqa: F401
        import xapisim.server  # noqa: F401
    except ImportError:
        return "fake"
    return "xenapi"


def _hard_exit() -> None:
    import os

    os._exit(2)


if __name__ == "__main__":
    sys.exit(main())
