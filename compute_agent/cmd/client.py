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
import sys
import time
import uuid as uuidlib
from collections.abc import Sequence
from typing import Any, TextIO

from compute_agent.cmd import client_devices, client_images
from compute_agent.cmd.client_consoles import ConsoleCommands, add_console_parsers
from compute_agent.cmd.client_hosts import list_hosts, open_database, pick_host  # noqa: F401
from compute_agent.cmd.client_migration import MigrationCommands, add_migration_parsers
from compute_agent.cmd.client_output import (  # noqa: F401 - part of the CLI's API
    COLUMNS,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    POWER_NAMES,
    Output,
    actions_table,
    format_table,
    hosts_table,
    instance_details,
    instances_table,
)

PAGE = 100  # list_instances page the CLI asks for when it reads every page

# The stable vm_states each request should end in.
TARGET_STATE: dict[str, tuple[str, ...]] = {
    "boot": ("active",), "start": ("active",), "stop": ("stopped",), "reboot": ("active",),
    "delete": ("deleted",), "pause": ("paused",), "unpause": ("active",),
    "suspend": ("suspended",), "resume": ("active",), "rescue": ("rescued",),
    "unrescue": ("active",), "resize": ("resized",),
    "resize-confirm": ("active", "stopped"), "resize-revert": ("active", "stopped"),
    "live-migrate": ("active",), "migrate": ("stopped",),
}
# command -> (ComputeAPI method, help) of the requests that take only a uuid.
SIMPLE_REQUESTS = {
    "pause": ("pause_instance", "pause (1.2)"),
    "unpause": ("unpause_instance", "unpause (1.2)"),
    "suspend": ("suspend_instance", "suspend to disk (1.2)"),
    "resume": ("resume_instance", "resume a suspended instance (1.2)"),
    "unrescue": ("unrescue_instance", "leave rescue (1.2)"),
    "resize-confirm": ("confirm_resize", "make a resize final (1.2)"),
    "resize-revert": ("revert_resize", "undo a resize (1.2)"),
}


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

    lister = sub.add_parser("list", help="list instances")
    lister.add_argument("--host", default=None, help="one host (default: every live host)")
    lister.add_argument("--vm-state", default=None, help="only instances in this vm_state")
    lister.add_argument("--limit", type=int, default=None,
                        help="one page of at most this many (default: every page)")
    lister.add_argument("--marker", default=None,
                        help="the page after this instance uuid (with --limit)")

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

    add_migration_parsers(sub, _add_wait)
    _add_wait(client_images.add_snapshot_parser(sub))

    for name, (_, help_text) in SIMPLE_REQUESTS.items():
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("uuid")
        cmd.add_argument("--host", default=None, help="agent host (default: asked)")
        _add_wait(cmd)
    rescue = sub.add_parser("rescue", help="boot a rescue VM with the root disk attached (1.2)")
    rescue.add_argument("uuid")
    rescue.add_argument("--host", default=None, help="agent host (default: asked)")
    rescue.add_argument("--image-id", default=None)
    rescue.add_argument("--image-url", default=None,
                        help="rescue image URL (with neither id nor url: a blank disk)")
    rescue.add_argument("--disk-format", default=None)
    _add_wait(rescue)
    resize = sub.add_parser("resize", help="new vCPUs, memory, a bigger root disk (1.2)")
    resize.add_argument("uuid")
    resize.add_argument("--host", default=None, help="agent host (default: asked)")
    resize.add_argument("--vcpus", type=int, required=True)
    resize.add_argument("--memory-mb", type=int, required=True)
    resize.add_argument("--root-gb", type=int, required=True)
    _add_wait(resize)
    actions = sub.add_parser("actions", help="what happened to an instance (1.2)")
    actions.add_argument("uuid")
    actions.add_argument("--host", default=None, help="agent host (default: any)")
    add_console_parsers(sub)

    hosts = sub.add_parser("hosts", help="compute hosts, their resources and liveness")
    hosts.add_argument("--ping", action="store_true", help="also ping every live host")
    client_devices.add_parsers(sub)
    return parser


def _add_wait(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--wait", action="store_true",
                     help="show progress until the instance settles; non-zero exit on error")
    cmd.add_argument("--wait-timeout", type=float, default=600.0)
    cmd.add_argument("--poll-interval", type=float, default=0.5)


# --------------------------------------------------------------------------- commands

class Client(client_devices.DeviceCommands, MigrationCommands, ConsoleCommands):
    def __init__(self, conf: Any, api: Any, out: Output, db: Any | None = None):
        self.conf = conf
        self.api = api
        self.out = out
        self._db = db

    @property
    def db(self) -> Any:
        if self._db is None:
            self._db = open_database(self.conf)
        return self._db

    def run(self, args: argparse.Namespace) -> int:
        if args.command in SIMPLE_REQUESTS:
            return self._simple(args)
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
            instances.extend(self._list(host, args))
        self.out.data(instances, instances_table)
        return EXIT_OK

    def _list(self, host: str, args: argparse.Namespace) -> list[dict[str, Any]]:
        """One page with --limit; otherwise every page."""
        if args.limit is not None:
            return self.api.list_instances(host, vm_state=args.vm_state, limit=args.limit,
                                           marker=args.marker)
        return self._all_pages(host, args.vm_state, args.marker)

    def _all_pages(self, host: str, vm_state: str | None,
                   marker: str | None = None) -> list[dict[str, Any]]:
        from compute_agent.exceptions import ComputeAgentError

        found: list[dict[str, Any]] = []
        while True:
            try:
                page = self.api.list_instances(host, vm_state=vm_state, limit=PAGE,
                                               marker=marker)
            except ComputeAgentError as exc:
                if exc.code != "UNSUPPORTED_VERSION" or vm_state or marker or found:
                    raise
                return self.api.list_instances(host)  # an agent older than 1.2: no paging
            found.extend(page)
            if len(page) < PAGE:
                return found
            marker = page[-1]["uuid"]

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

    def cmd_snapshot(self, args: argparse.Namespace) -> int:
        return client_images.snapshot(self, args, _parse_meta(args.property))

    def cmd_rescue(self, args: argparse.Namespace) -> int:
        host = self._host_of(args)
        image = None
        if args.image_url or args.image_id:
            image = {"id": args.image_id, "url": args.image_url,
                     "disk_format": args.disk_format}
        return self._after(args, "rescue", host, self.api.rescue_instance(
            host, args.uuid, image, confirm=True))

    def cmd_resize(self, args: argparse.Namespace) -> int:
        host = self._host_of(args)
        flavor = {"vcpus": args.vcpus, "memory_mb": args.memory_mb, "root_gb": args.root_gb}
        return self._after(args, "resize", host, self.api.resize_instance(
            host, args.uuid, flavor, confirm=True))

    def cmd_actions(self, args: argparse.Namespace) -> int:
        self.out.data(self.api.get_instance_actions(args.host, args.uuid), actions_table)
        return EXIT_OK

    def _simple(self, args: argparse.Namespace) -> int:
        host = self._host_of(args)
        method = getattr(self.api, SIMPLE_REQUESTS[args.command][0])
        return self._after(args, args.command, host, method(host, args.uuid, confirm=True))

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
        with self.out.follower(request) as follow:
            while True:
                follow.show(inst)
                if inst["task_state"] is None and not (request == "boot"
                                                       and inst["vm_state"] == "building"):
                    break
                if time.monotonic() > deadline:
                    follow.note(f"timed out after {args.wait_timeout:.0f} s")
                    return EXIT_TIMEOUT
                time.sleep(args.poll_interval)
                inst = self.api.get_instance(host, inst["uuid"])
        self.out.data(inst, instance_details)
        if inst["vm_state"] not in TARGET_STATE[request]:
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
         out: TextIO | None = None, err: TextIO | None = None,
         terminal: bool | None = None) -> int:
    """Entry point; tests hand in ``conf`` and ``api`` (e.g. on fake://) and
    may say whether ``out`` is a terminal (``terminal``)."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    output = Output(args.json, out or sys.stdout, err or sys.stderr, force_terminal=terminal)

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
