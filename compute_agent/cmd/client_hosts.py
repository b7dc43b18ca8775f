"""Where ``compute-agent-client`` sends a request when it is not told: the
compute hosts and their liveness from the database the agents share, and
the live host with the most free memory for a build."""

from __future__ import annotations

from typing import Any


def list_hosts(conf: Any, db: Any | None = None) -> list[dict[str, Any]]:
    """Compute nodes merged with their compute-agent service record."""
    from compute_agent.compute.host_status import SERVICE_BINARY

    db = db or open_database(conf)
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


def open_database(conf: Any) -> Any:
    from compute_agent.db.api import Database

    return Database.from_conf(conf)
