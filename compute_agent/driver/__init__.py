"""Compute drivers: the interface in base.py, implementations by name."""

from __future__ import annotations

import importlib
from typing import Any

from compute_agent.driver.base import ComputeDriver, TaskListener

# name -> "module:Class"; imported lazily so that the fake driver does not pull
# in the XenAPI SDK and the xenapi driver is only loaded when configured.
DRIVERS: dict[str, str] = {
    "fake": "compute_agent.driver.fake:FakeDriver",
    "xenapi": "compute_agent.driver.xenapi.driver:XenAPIDriver",
    "libvirt": "compute_agent.driver.libvirt.driver:LibvirtDriver",
}


def load_driver(name: str, conf: Any, task_listener: TaskListener | None = None
                ) -> ComputeDriver:
    """Instantiate the driver called ``name`` ('fake', 'xenapi' or 'libvirt') with the
    configuration it is to use."""
    try:
        target = DRIVERS[name]
    except KeyError:
        raise ValueError(
            f"unknown compute_driver {name!r}; choose from {sorted(DRIVERS)}"
        ) from None
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(conf=conf, task_listener=task_listener)
