"""The XenAPI driver: dom0 (XenServer / XCP-ng / xapi-sim) over XML-RPC.

Layers, bottom up: ``transport`` (HTTP(S) with timeouts and TLS
verification), ``session`` (one SDK session per concurrent user, a pool of
them, re-login and coordinator following), ``errors`` (XenAPI failures to
the agent's structured errors), ``tasks`` / ``watcher`` (running ``Async.*``
calls and waiting on their tasks), then the concerns the driver wires
together: ``vm_ops``, ``storage``, ``network``, ``host``.
"""
