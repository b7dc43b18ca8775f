"""``compute-agent-client``: the operator's (and a minimal scheduler's) CLI.

Talks to agents through the same ComputeAPI a scheduler imports, over the
transport in ``--config-file`` ([DEFAULT] transport_url); ``hosts`` and
``boot`` without ``--host`` read the compute nodes and services from the
database named there ([database] connection).

Exit status: 0 success, 1 the request was refused or the operation ended in
an unexpected state (``--wait``), 2 usage or configuration error, 3 the
wait timed out.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from typing import Any, TextIO

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3

# The stable vm_state each request should end in.
TARGET_STATE = {"boot": "active", "start": "active", "stop": "stopped", "reboot": "active",
                "delete": "deleted", "live-migrate": "active",
                "migrate": "stopped"}
COLUMNS = ("uuid", "name", "host", "vm_state", "task_state", "power", "progress")
POWER_NAMES = {0: "nostate", 1: "running", 3: "paused", 4: "shutdown", 6: "crashed",
               7: "suspended"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="compute-agent-client",
                                     description="Drive compute agents over RPC.")
    parser.add_argument("--config-file", action="append", default=[],
                        help="oslo.config file(s) with transport_url and [database]")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for each RPC reply (default 30)")
    sub = parser.add_subparsers(dest="command", required=True)

    boot = sub.add_parser("boot", help="build an instance")
    boot.add_argument("name")
    boot.add_argument("--uuid", default=None, help="instance uuid (default: a new one)")
    boot.add_argument("--vcpus", type=int, default=1)
    boot.add_argument("--memory-mb", type=int, default=512)
    boot.add_argument("--root-gb", type=int, default=1)
    boot.add_argument("--image-id", default=None)
    boot.add_argument("--image-url", default=None,
                      help="image to download (default: none, a blank root disk)")
    boot.add_argument("--disk-format", default=None)
    boot.add_argument("--network", action="append", default=[], help="network name (repeat)")
    boot.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    boot.add_argument("--host", default=None,
                      help="agent host (default: the live host with most free memory)")
    _add_wait(boot)

    sub.add_parser("list", help="list instances").add_argument(
        "--host", default=None, help="one host (default: every live host)")

    for name, help_text in (("show", "show one instance"), ("start", "power on"),
                            ("stop", "power off"), ("reboot", "reboot"),
                            ("delete", "terminate")):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("uuid")
        cmd.add_argument("--host", default=None,
                         help="agent host (default: asked from any agent)")
        if name != "show":
            _add_wait(cmd)
        if name in ("stop", "reboot"):
            cmd.add_argument("--hard", action="store_true",
                             help="hard power off / hard reboot")

    migrate = sub.add_parser("live-migrate",
                             help="move a running instance to another agent's host, live")
    migrate.add_argument("uuid")
    migrate.add_argument("dest_host", help="the destination agent's host")
    migrate.add_argument("--host", default=None,
                         help="the instance's agent host (default: asked from any agent)")
    _add_wait(migrate)

    cold = sub.add_parser("migrate", help="move a stopped instance to another agent's host")
    cold.add_argument("uuid")
    cold.add_argument("dest_host", help="the destination agent's host")
    cold.add_argument("--host", default=None,
                      help="the instance's agent host (default: asked from any agent)")
    _add_wait(cold)

    maint = sub.add_parser("maintenance", help="empty a host for maintenance, or end it")
    maint.add_argument("host")
    maint.add_argument("mode", choices=("on", "off"))
    maint.add_argument("--dest", action="append", default=None,
                       help="a destination agent host (repeat; default: the host's pool)")
    maint.add_argument("--wait", action="store_true", help="until the host is empty")
    maint.add_argument("--wait-timeout", type=float, default=3600.0)
    maint.add_argument("--poll-interval", type=float, default=1.0)
    enable = sub.add_parser("host-enable", help="take a host back into scheduling")
    enable.add_argument("host")
    disable = sub.add_parser("host-disable", help="take a host out of scheduling")
    disable.add_argument("host")
    power = sub.add_parser("host-power", help="reboot or shut down a disabled, empty host")
    power.add_argument("host")
    power.add_argument("action", choices=("reboot", "shutdown"))

    join = sub.add_parser("pool-join", help="make a standalone host a member of a pool "
                          "(the coordinator's password from $COMPUTE_AGENT_POOL_PASSWORD, "
                          "or asked for)")
    join.add_argument("host")
    join.add_argument("coordinator_address")
    join.add_argument("--username", default="root")
    leave = sub.add_parser("pool-leave", help="eject a host from its pool")
    leave.add_argument("host")
    for name, help_text in (("console", "a one-time noVNC URL for the instance's console"),
                            ("console-log", "the end of the instance's console log"),
                            ("diagnostics", "the instance's latest CPU, memory, disk and "
                                            "network figures")):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("uuid")
        cmd.add_argument("--host", default=None,
                         help="agent host (default: asked from any agent)")
        if name == "console-log":
            cmd.add_argument("--lines", type=int, default=None,
                             help="only the last LINES lines")

    hosts = sub.add_parser("hosts", help="compute hosts, their resources and liveness")
    hosts.add_argument("--ping", action="store_true", help="also ping every live host")
    return parser


def _add_wait(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--wait", action="store_true",
                     help="show progress until the instance settles; non-zero exit on error")
    cmd.add_argument("--wait-timeout", type=float, default=600.0)
    cmd.add_argument("--poll-interval", type=float, default=0.5)


# --------------------------------------------------------------------------- output

class Output:
    def __init__(self, as_json: bool, out: TextIO, err: TextIO):
        self.as_json = as_json
        self.out = out
        self.err = err

    def data(self, value: Any, table: Callable[[Any], str] | None = None) -> None:
        if self.as_json or table is None:
            print(json.dumps(value, indent=2, sort_keys=True), file=self.out)
        else:
            print(table(value), file=self.out)

    def progress(self, line: str) -> None:
        # Progress goes to stderr under --json so stdout stays one document.
        print(line, file=self.err if self.as_json else self.out, flush=True)

    def error(self, exc: Any) -> None:
        if self.as_json:
            print(json.dumps({"error": exc.to_dict()}), file=self.out)
        print(f"ERROR {exc.code} {exc.params}: {exc.message}", file=self.err)


def _row(inst: dict[str, Any]) -> list[str]:
    return [inst["uuid"], inst["name"], inst.get("host") or "-", inst["vm_state"],
            inst["task_state"] or "-", POWER_NAMES.get(inst["power_state"], "?"),
            f"{inst['progress']}%"]


def format_table(header: Sequence[str], rows: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def instances_table(instances: list[dict[str, Any]]) -> str:
    return format_table(COLUMNS, [_row(i) for i in instances])


def instance_details(inst: dict[str, Any]) -> str:
    lines = []
    for key in ("uuid", "name", "host", "vm_state", "task_state", "power_state", "progress",
                "created_at", "updated_at", "launched_at"):
        value = inst.get(key)
        if key == "power_state":
            value = f"{value} ({POWER_NAMES.get(value, '?')})"
        lines.append(f"{key:12} {value if value is not None else '-'}")
    lines.append(f"{'flavor':12} {json.dumps(inst.get('flavor'), sort_keys=True)}")
    lines.append(f"{'image':12} {json.dumps(inst.get('image'), sort_keys=True)}")
    fault = inst.get("fault")
    lines.append(f"{'fault':12} " + (f"{fault['code']} {fault['params']}: {fault['message']}"
                                     if fault else "-"))
    return "\n".join(lines)


def hosts_table(hosts: list[dict[str, Any]]) -> str:
    header = ("host", "state", "vcpus", "memory_mb", "free_mb", "disk_gb", "vms", "heartbeat")
    rows = [[h["host"], "up" if h["alive"] else "down",
             f"{h.get('vcpus_used', 0)}/{h.get('vcpus', 0)}",
             f"{h.get('memory_mb_used', 0)}/{h.get('memory_mb', 0)}",
             str(h.get("free_memory_mb", 0)),
             f"{h.get('local_gb_used', 0)}/{h.get('local_gb', 0)}",
             str(h.get("running_vms", 0)), h.get("heartbeat") or "-"] for h in hosts]
    return format_table(header, rows)


# --------------------------------------------------------------------------- scheduling

def list_hosts(conf: Any, db: Any | None = None) -> list[dict[str, Any]]:
    """Compute nodes merged with their compute-agent service record."""
    from compute_agent.compute.host_status import SERVICE_BINARY

    db = db or _database(conf)
    services = {s["host"]: s for s in db.list_services(conf.service_down_time)
                if s["binary"] == SERVICE_BINARY}
    nodes = {n["host"]: n for n in db.list_compute_nodes()}
    hosts = []
    for host in sorted(set(services) | set(nodes)):
        service = services.get(host, {})
        hosts.append({**nodes.get(host, {"host": host}),
                      "alive": bool(service.get("alive")) and not service.get("disabled"),
                      "heartbeat": service.get("updated_at")})
    return hosts


def pick_host(hosts: list[dict[str, Any]], memory_mb: int) -> str:
    """The live host with the most free memory that fits ``memory_mb``."""
    from compute_agent.exceptions import NoValidHost

    candidates = [h for h in hosts if h["alive"] and h.get("free_memory_mb", 0) >= memory_mb]
    if not candidates:
        raise NoValidHost(f"no live host has {memory_mb} MB free")
    return max(candidates, key=lambda h: (h["free_memory_mb"], h["host"]))["host"]


def _database(conf: Any) -> Any:
    from compute_agent.db.api import Database

    return Database.from_conf(conf)


# --------------------------------------------------------------------------- commands

class Client:
    def __init__(self, conf: Any, api: Any, out: Output, db: Any | None = None):
        self.conf = conf
        self.api = api
        self.out = out
        self._db = db

    @property
    def db(self) -> Any:
        if self._db is None:
            self._db = _database(self.conf)
        return self._db

    def run(self, args: argparse.Namespace) -> int:
        return getattr(self, f"cmd_{args.command.replace('-', '_')}")(args)

    def cmd_boot(self, args: argparse.Namespace) -> int:
        instance = {
            "uuid": args.uuid or str(uuidlib.uuid4()),
            "name": args.name,
            "flavor": {"vcpus": args.vcpus, "memory_mb": args.memory_mb,
                       "root_gb": args.root_gb},
            "image": {"id": args.image_id, "url": args.image_url,
                      "disk_format": args.disk_format},
            "networks": list(args.network),
            "metadata": _parse_meta(args.meta),
        }
        host = args.host or pick_host(list_hosts(self.conf, self.db), args.memory_mb)
        accepted = self.api.build_instance(host, instance, confirm=True)
        return self._after(args, "boot", host, accepted)

    def cmd_list(self, args: argparse.Namespace) -> int:
        if args.host:
            hosts = [args.host]
        else:
            hosts = [h["host"] for h in list_hosts(self.conf, self.db) if h["alive"]]
        instances: list[dict[str, Any]] = []
        for host in hosts:
            instances.extend(self.api.list_instances(host))
        self.out.data(instances, instances_table)
        return EXIT_OK

    def cmd_show(self, args: argparse.Namespace) -> int:
        self.out.data(self.api.get_instance(args.host, args.uuid), instance_details)
        return EXIT_OK

    def cmd_start(self, args: argparse.Namespace) -> int:
        host = self._host_of(args)
        return self._after(args, "start", host,
                           self.api.start_instance(host, args.uuid, confirm=True))

    def cmd_stop(self, args: argparse.Namespace) -> int:
        host = self._host_of(args)
        return self._after(args, "stop", host, self.api.stop_instance(
            host, args.uuid, clean=not args.hard, confirm=True))

    def cmd_reboot(self, args: argparse.Namespace) -> int:
        host = self._host_of(args)
        return self._after(args, "reboot", host, self.api.reboot_instance(
            host, args.uuid, "HARD" if args.hard else "SOFT", confirm=True))

    def cmd_delete(self, args: argparse.Namespace) -> int:
        host = self._host_of(args)
        return self._after(args, "delete", host,
                           self.api.terminate_instance(host, args.uuid, confirm=True))

    def cmd_live_migrate(self, args: argparse.Namespace) -> int:
        host = self._host_of(args)
        code = self._after(args, "live-migrate", host, self.api.live_migrate_instance(
            host, args.uuid, args.dest_host, confirm=True))
        if code == EXIT_OK and args.wait:
            inst = self.api.get_instance(None, args.uuid)
            if inst["host"] != args.dest_host:
                self.out.progress(f"ERROR instance stayed on {inst['host']}")
                return EXIT_ERROR
        return code

    def cmd_migrate(self, args: argparse.Namespace) -> int:
        host = self._host_of(args)
        code = self._after(args, "migrate", host, self.api.migrate_instance(
            host, args.uuid, args.dest_host, confirm=True))
        if code == EXIT_OK and args.wait:
            inst = self.api.get_instance(None, args.uuid)
            if inst["host"] != args.dest_host:
                self.out.progress(f"ERROR instance stayed on {inst['host']}")
                return EXIT_ERROR
        return code

    def cmd_maintenance(self, args: argparse.Namespace) -> int:
        status = self.api.set_host_maintenance(args.host, args.mode == "on", args.dest)
        deadline = time.monotonic() + args.wait_timeout
        while args.wait and status.get("state") == "evacuating":
            if time.monotonic() > deadline:
                self.out.progress(f"timed out after {args.wait_timeout:.0f} s")
                return EXIT_TIMEOUT
            time.sleep(args.poll_interval)
            status = self.api.get_host_status(args.host)["maintenance"]
            self.out.progress(f"{args.host}: {len(status.get('moved', []))} of "
                              f"{status.get('total', 0)} moved, "
                              f"{len(status.get('failed', {}))} could not move")
        self.out.data(status)
        return EXIT_ERROR if status.get("failed") else EXIT_OK

    def cmd_host_enable(self, args: argparse.Namespace) -> int:
        self.out.data(self.api.set_host_enabled(args.host, True))
        return EXIT_OK

    def cmd_host_disable(self, args: argparse.Namespace) -> int:
        self.out.data(self.api.set_host_enabled(args.host, False))
        return EXIT_OK

    def cmd_host_power(self, args: argparse.Namespace) -> int:
        self.out.data(self.api.host_power_action(args.host, args.action))
        return EXIT_OK

    def cmd_pool_join(self, args: argparse.Namespace) -> int:
        # Never on the command line (ps shows it): the environment or a prompt.
        password = os.environ.get("COMPUTE_AGENT_POOL_PASSWORD") or getpass.getpass(
            f"password of {args.username} at {args.coordinator_address}: ")
        self.out.data(self.api.join_pool(args.host, args.coordinator_address, args.username,
                                         password, timeout=120))
        return EXIT_OK

    def cmd_pool_leave(self, args: argparse.Namespace) -> int:
        self.out.data(self.api.leave_pool(args.host, timeout=120))
    def cmd_console(self, args: argparse.Namespace) -> int:
        console = self.api.get_vnc_console(self._host_of(args), args.uuid)
        self.out.data(console, lambda c: f"{c['url']}\n(usable once, until {c['expires_at']})")
        return EXIT_OK

    def cmd_console_log(self, args: argparse.Namespace) -> int:
        log = self.api.get_console_output(self._host_of(args), args.uuid, args.lines)
        self.out.data(log, lambda c: c["output"].rstrip("\n"))
        return EXIT_OK

    def cmd_diagnostics(self, args: argparse.Namespace) -> int:
        self.out.data(self.api.get_diagnostics(self._host_of(args), args.uuid))
        return EXIT_OK

    def cmd_hosts(self, args: argparse.Namespace) -> int:
        hosts = list_hosts(self.conf, self.db)
        if args.ping:
            from compute_agent.exceptions import ComputeAgentError

            for h in hosts:
                if h["alive"]:
                    try:
                        h["ping"] = self.api.ping(h["host"], timeout=min(5.0, self.api.timeout
                                                                         or 5.0))
                    except ComputeAgentError as exc:
                        h["ping"] = exc.to_dict()
        self.out.data(hosts, hosts_table)
        return EXIT_OK

    # -- helpers ------------------------------------------------------------------

    def _host_of(self, args: argparse.Namespace) -> str:
        if args.host:
            return args.host
        # Agents share the database: any of them can say where the instance lives.
        return self.api.get_instance(None, args.uuid)["host"]

    def _after(self, args: argparse.Namespace, request: str, host: str,
               accepted: dict[str, Any]) -> int:
        if not args.wait:
            self.out.data(accepted, instance_details)
            return EXIT_OK
        return self._wait(args, request, host, accepted)

    def _wait(self, args: argparse.Namespace, request: str, host: str,
              inst: dict[str, Any]) -> int:
        deadline = time.monotonic() + args.wait_timeout
        last = None
        while True:
            shown = (inst["vm_state"], inst["task_state"], inst["power_state"], inst["progress"])
            if shown != last:
                self.out.progress(
                    f"{inst['uuid']}  {inst['vm_state']:9} {inst['task_state'] or '-':15} "
                    f"{POWER_NAMES.get(inst['power_state'], '?'):9} {inst['progress']:3}%")
                last = shown
            if inst["task_state"] is None and not (request == "boot"
                                                   and inst["vm_state"] == "building"):
                break
            if time.monotonic() > deadline:
                self.out.progress(f"timed out after {args.wait_timeout:.0f} s")
                return EXIT_TIMEOUT
            time.sleep(args.poll_interval)
            inst = self.api.get_instance(host, inst["uuid"])
        self.out.data(inst, instance_details)
        if inst["vm_state"] != TARGET_STATE[request]:
            fault = inst.get("fault") or {}
            self.out.progress(f"ERROR {request} ended in vm_state {inst['vm_state']}: "
                              f"{fault.get('code')} {fault.get('params')} {fault.get('message')}")
            return EXIT_ERROR
        return EXIT_OK


def _parse_meta(items: list[str]) -> dict[str, str]:
    meta = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--meta needs KEY=VALUE, got {item!r}")
        meta[key] = value
    return meta


def load_conf(config_files: list[str]) -> Any:
    from compute_agent.conf import CONF
    from compute_agent.process import version
    from compute_agent.rpc import transport

    transport.register_opts(CONF)
    args = [a for f in config_files for a in ("--config-file", f)]
    CONF(args, project="compute-agent", version=version.version_string())
    return CONF


def main(argv: Sequence[str] | None = None, conf: Any = None, api: Any = None,
         out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Entry point; tests hand in ``conf`` and ``api`` (e.g. on fake://)."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    output = Output(args.json, out or sys.stdout, err or sys.stderr)

    from compute_agent.process import concurrency

    if concurrency.selected() is None and api is None:
        concurrency.setup(concurrency.THREADING)
    from oslo_config import cfg
    from sqlalchemy import exc as sa_exc

    from compute_agent.exceptions import ComputeAgentError

    try:
        if conf is None:
            conf = load_conf(args.config_file)
        if api is None:
            from compute_agent.rpc.rpcapi import ComputeAPI

            api = ComputeAPI(conf, timeout=args.timeout)
        return Client(conf, api, output).run(args)
    except ComputeAgentError as exc:
        output.error(exc)
        return EXIT_ERROR
    except (cfg.Error, ValueError) as exc:
        print(f"compute-agent-client: {exc}", file=output.err)
        return EXIT_USAGE
    except sa_exc.SQLAlchemyError as exc:
        print(f"compute-agent-client: cannot read the database named in [database] "
              f"connection ({type(exc).__name__}); give --host or fix the configuration",
              file=output.err)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
