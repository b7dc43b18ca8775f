"""Entry point for oslo-config-generator and oslo-config-validator.

``list_opts`` is published as the ``compute_agent`` namespace of the
``oslo.config.opts`` entry point; library options come from their own
namespaces (see etc/compute-agent/compute-agent-config-generator.conf).
"""

from oslo_config import cfg

from compute_agent.conf import (
    console,
    database,
    default,
    glance,
    image_cache,
    libvirt,
    metrics,
    tasks,
    xenserver,
)

_MODULES = (default, database, xenserver, tasks, libvirt, console, metrics, glance, image_cache)


def list_opts() -> list[tuple[str | cfg.OptGroup, list[cfg.Opt]]]:
    """Return (group, options) pairs for every group the agent defines."""
    result: list[tuple[str | cfg.OptGroup, list[cfg.Opt]]] = []
    for module in _MODULES:
        for group, opts in module.list_opts().items():
            result.append((group, list(opts)))
    return result
