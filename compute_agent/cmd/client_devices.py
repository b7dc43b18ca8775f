"""``compute-agent-client`` commands for volumes, ports and the guest agent
(RPC 1.4). Secrets never go on the command line (where ``ps`` shows them):
the CHAP password and the admin password are read from a file or from
standard input (``-``).

  volume-attach UUID VOLUME_ID --portal ADDR[:PORT] --iqn IQN [--lun N]
                [--chap-user USER --chap-password-file FILE|-] [--device xvdX]
  volume-detach UUID VOLUME_ID
  interface-attach UUID PORT_ID [--mac MAC] [--network NAME]
  interface-detach UUID PORT_ID
  set-password UUID --password-file FILE|-
  inject-file UUID PATH LOCAL_FILE
  reset-network UUID
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

COMMANDS = ("volume_attach", "volume_detach", "interface_attach", "interface_detach",
            "set_password", "inject_file", "reset_network")


def add_parsers(sub: Any) -> None:
    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("uuid")
        cmd.add_argument("--host", default=None,
                         help="agent host (default: asked from any agent)")
        return cmd

    cmd = command("volume-attach", "attach an iSCSI volume")
    cmd.add_argument("volume_id")
    cmd.add_argument("--portal", required=True, help="target portal ADDRESS[:PORT]")
    cmd.add_argument("--iqn", required=True, help="target IQN")
    cmd.add_argument("--lun", type=int, default=0)
    cmd.add_argument("--chap-user", default=None)
    cmd.add_argument("--chap-password-file", default=None,
                     help="file holding the CHAP secret ('-': standard input)")
    cmd.add_argument("--device", default=None, help="device name, e.g. xvdc")
    command("volume-detach", "detach a volume").add_argument("volume_id")
    cmd = command("interface-attach", "attach a network port")
    cmd.add_argument("port_id")
    cmd.add_argument("--mac", default="", help="the port's MAC address")
    cmd.add_argument("--network", default=None,
                     help="dom0 network (default: the integration bridge)")
    command("interface-detach", "detach a network port").add_argument("port_id")
    command("set-password", "set the guest's admin password").add_argument(
        "--password-file", required=True, help="file holding the password ('-': stdin)")
    cmd = command("inject-file", "write a file into the guest")
    cmd.add_argument("path", help="path in the guest")
    cmd.add_argument("local_file", help="local file with the contents")
    command("reset-network", "have the guest agent reconfigure the network")


def read_secret(path: str) -> str:
    if path == "-":
        return sys.stdin.readline().rstrip("\n")
    with open(path, encoding="utf-8") as f:
        return f.readline().rstrip("\n")


class DeviceCommands:
    """Mixed into cmd.client.Client (needs api, out, _host_of)."""

    api: Any
    out: Any

    def _host_of(self, args: argparse.Namespace) -> str:  # provided by Client
        raise NotImplementedError

    def cmd_volume_attach(self, args: argparse.Namespace) -> int:
        data: dict[str, Any] = {"target_portal": args.portal, "target_iqn": args.iqn,
                                "target_lun": args.lun}
        if args.chap_user:
            if not args.chap_password_file:
                raise ValueError("--chap-user needs --chap-password-file")
            data.update(auth_method="CHAP", auth_username=args.chap_user,
                        auth_password=read_secret(args.chap_password_file))
        info = {"driver_volume_type": "iscsi", "data": data}
        self.out.data(self.api.attach_volume(self._host_of(args), args.uuid, args.volume_id,
                                             info, device=args.device))
        return 0

    def cmd_volume_detach(self, args: argparse.Namespace) -> int:
        self.out.data(self.api.detach_volume(self._host_of(args), args.uuid, args.volume_id))
        return 0

    def cmd_interface_attach(self, args: argparse.Namespace) -> int:
        port: dict[str, Any] = {"id": args.port_id, "mac_address": args.mac}
        if args.network:
            port["network"] = args.network
        self.out.data(self.api.attach_interface(self._host_of(args), args.uuid, port))
        return 0

    def cmd_interface_detach(self, args: argparse.Namespace) -> int:
        self.out.data(self.api.detach_interface(self._host_of(args), args.uuid, args.port_id))
        return 0

    def cmd_set_password(self, args: argparse.Namespace) -> int:
        password = read_secret(args.password_file)
        self.out.data(self.api.set_admin_password(self._host_of(args), args.uuid, password))
        return 0

    def cmd_inject_file(self, args: argparse.Namespace) -> int:
        with open(args.local_file, encoding="utf-8") as f:
            contents = f.read()
        self.out.data(self.api.inject_file(self._host_of(args), args.uuid, args.path,
                                           contents))
        return 0

    def cmd_reset_network(self, args: argparse.Namespace) -> int:
        self.out.data(self.api.reset_network(self._host_of(args), args.uuid))
        return 0
