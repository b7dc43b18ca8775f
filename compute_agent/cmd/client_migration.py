"""``compute-agent-client`` commands for moving instances and running
hosts (RPC 1.6): live-migrate, migrate, maintenance, host-enable,
host-disable, host-power, pool-join, pool-leave. The Client class of
client.py takes them in as a mixin (self.api, self.out, _host_of, _after)."""

from __future__ import annotations

import argparse
import getpass
import os
import time
from collections.abc import Callable
from typing import Any

from compute_agent.cmd.client_output import EXIT_ERROR, EXIT_OK, EXIT_TIMEOUT


def add_migration_parsers(sub: Any, add_wait: Callable[[argparse.ArgumentParser], None]) -> None:
    for name, help_text in (("live-migrate", "move a running instance to another agent's "
                                             "host, live"),
                            ("migrate", "move a stopped instance to another agent's host")):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("uuid")
        cmd.add_argument("dest_host", help="the destination agent's host")
        cmd.add_argument("--host", default=None,
                         help="the instance's agent host (default: asked from any agent)")
        add_wait(cmd)
        if name == "migrate":
            # all three, or none: a resize to another host (1.6)
            for flag in ("--vcpus", "--memory-mb", "--root-gb"):
                cmd.add_argument(flag, type=int, default=None,
                                 help="with the other two: resize at the destination "
                                      "(--wait waits for the move; then resize-confirm or "
                                      "resize-revert on the destination)")
    maint = sub.add_parser("maintenance", help="empty a host for maintenance, or end it")
    maint.add_argument("host")
    maint.add_argument("mode", choices=("on", "off"))
    maint.add_argument("--dest", action="append", default=None,
                       help="a destination agent host (repeat; default: the host's pool)")
    maint.add_argument("--wait", action="store_true", help="until the host is empty")
    maint.add_argument("--wait-timeout", type=float, default=3600.0)
    maint.add_argument("--poll-interval", type=float, default=1.0)
    for name, help_text in (("host-enable", "take a host back into scheduling"),
                            ("host-disable", "take a host out of scheduling"),
                            ("pool-leave", "eject a host from its pool")):
        sub.add_parser(name, help=help_text).add_argument("host")
    power = sub.add_parser("host-power", help="reboot or shut down a disabled, empty host")
    power.add_argument("host")
    power.add_argument("action", choices=("reboot", "shutdown"))
    join = sub.add_parser("pool-join", help="make a standalone host a member of a pool "
                          "(the coordinator's password from $COMPUTE_AGENT_POOL_PASSWORD, "
                          "or asked for)")
    join.add_argument("host")
    join.add_argument("coordinator_address")
    join.add_argument("--username", default="root")


class MigrationCommands:
    api: Any
    out: Any

    def _host_of(self, args: argparse.Namespace) -> str:  # provided by Client
        raise NotImplementedError

    def _after(self, args: argparse.Namespace, request: str, host: str,
               accepted: dict[str, Any]) -> int:  # provided by Client
        raise NotImplementedError

    def _moved(self, args: argparse.Namespace, request: str, accepted: dict[str, Any],
               host: str) -> int:
        code = self._after(args, request, host, accepted)
        if code == EXIT_OK and args.wait:
            inst = self.api.get_instance(None, args.uuid)
            if inst["host"] != args.dest_host:
                self.out.progress(f"ERROR instance stayed on {inst['host']}")
                return EXIT_ERROR
        return code

    def cmd_live_migrate(self, args: argparse.Namespace) -> int:
        host = self._host_of(args)
        return self._moved(args, "live-migrate", self.api.live_migrate_instance(
            host, args.uuid, args.dest_host, confirm=True), host)

    def cmd_migrate(self, args: argparse.Namespace) -> int:
        host = self._host_of(args)
        sizes = (args.vcpus, args.memory_mb, args.root_gb)
        flavor = None if sizes == (None, None, None) else {
            "vcpus": args.vcpus, "memory_mb": args.memory_mb, "root_gb": args.root_gb}
        return self._moved(args, "migrate", self.api.migrate_instance(
            host, args.uuid, args.dest_host, flavor, confirm=True), host)

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
        return EXIT_OK
