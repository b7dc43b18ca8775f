"""The libvirt driver: Xen through libvirt's libxl driver, or KVM through its
QEMU driver, behind the same ComputeDriver interface as the XenAPI driver.

One module per concern: connection (open, re-open after a drop, error
translation), detection (which hypervisor this host runs), domain_xml (the
domain definition), storage (root volumes in a pool), events (libvirt's event
loop and lifecycle events), domain_ops (the operations), host (resources and
capabilities) and driver (the wiring).
"""
