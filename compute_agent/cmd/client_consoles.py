"""``compute-agent-client`` commands for consoles and diagnostics (RPC 1.5):
console (a one-time noVNC URL), console-log and diagnostics. They only read:
there is no ``--wait``. The Client class of client.py takes them in as a
mixin (self.api, self.out, _host_of)."""

from __future__ import annotations

import argparse
from typing import Any

from compute_agent.cmd.client_output import EXIT_OK


def add_console_parsers(sub: Any) -> None:
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


class ConsoleCommands:
    api: Any
    out: Any

    def _host_of(self, args: argparse.Namespace) -> str:  # provided by Client
        raise NotImplementedError

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
