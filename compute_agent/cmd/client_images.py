"""The client's ``snapshot`` command: snapshot_instance (RPC 1.3), and
with ``--wait`` following the instance until the snapshot ended."""

from __future__ import annotations

import argparse
import time
from typing import Any

from compute_agent.cmd.client_output import EXIT_ERROR, EXIT_OK, EXIT_TIMEOUT


def add_snapshot_parser(sub: Any) -> argparse.ArgumentParser:
    snap = sub.add_parser("snapshot", help="snapshot an instance's root disk into a new "
                          "Glance image (prints the image id)")
    snap.add_argument("uuid")
    snap.add_argument("name", help="name of the new image")
    snap.add_argument("--host", default=None, help="agent host (default: asked)")
    snap.add_argument("--property", action="append", default=[], metavar="KEY=VALUE",
                      help="an image property (repeat)")
    return snap


def snapshot(client: Any, args: argparse.Namespace, properties: dict[str, str]) -> int:
    """Print {image_id}; with --wait, follow the instance until it leaves
    image_snapshot: a snapshot that failed leaves a new fault (the
    instance itself settles back where it was either way)."""
    host = client._host_of(args)
    fault_before = client.api.get_instance(host, args.uuid).get("fault") if args.wait else None
    answer = client.api.snapshot_instance(host, args.uuid, {**properties, "name": args.name})
    client.out.data(answer)
    if not args.wait:
        return EXIT_OK
    deadline = time.monotonic() + args.wait_timeout
    while True:
        inst = client.api.get_instance(host, args.uuid)
        if inst["task_state"] is None:
            break
        if time.monotonic() > deadline:
            client.out.progress(f"timed out after {args.wait_timeout:.0f} s")
            return EXIT_TIMEOUT
        time.sleep(args.poll_interval)
    fault = inst.get("fault")
    if fault and fault != fault_before:
        client.out.progress(f"ERROR snapshot failed: {fault.get('code')} {fault.get('params')}")
        return EXIT_ERROR
    return EXIT_OK
