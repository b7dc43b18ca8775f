"""Options of the [libvirt] group: how the libvirt driver reaches the
hypervisor and how it writes domains."""

from oslo_config import cfg

libvirt_group = cfg.OptGroup(
    "libvirt",
    title="libvirt options",
    help="The libvirt driver: Xen through libvirt's libxl driver, or KVM through "
    "its QEMU driver. Used when compute_driver is libvirt.",
)

LIBVIRT_OPTS = [
    cfg.StrOpt(
        "virt_type",
        default="auto",
        choices=[
            ("auto", "Detect the hypervisor of this host (see hypervisor_root)."),
            ("xen", "Xen through libxl: xen disk bus and netfront NICs."),
            ("kvm", "KVM through QEMU: virtio disks and NICs."),
        ],
        help="The hypervisor of this host. It chooses the default connection_uri "
        "and the paravirtual device family of every domain. 'auto' picks xen when "
        "sys/hypervisor/type reads 'xen', otherwise kvm when dev/kvm exists or the "
        "kvm module is loaded; a host with neither refuses to start.",
    ),
    cfg.StrOpt(
        "connection_uri",
        default="",
        help="libvirt connection URI. Empty uses xen:///system for Xen and "
        "qemu:///system for KVM. test:///default is libvirt's in-process fake "
        "hypervisor (for tests: its state lives and dies with the agent process).",
    ),
    cfg.StrOpt(
        "hypervisor_root",
        default="/",
        help="Directory under which detection reads sys/hypervisor/type, dev/kvm "
        "and proc/modules. Only tests change it.",
    ),
    cfg.BoolOpt(
        "xen_hvm",
        default=False,
        help="Under Xen, boot every guest fully virtualised (HVM) instead of "
        "paravirtualised (PV). A guest whose image or metadata says vm_mode=hvm "
        "boots HVM whatever this says.",
    ),
    cfg.StrOpt(
        "xen_pv_bootloader",
        default="pygrub",
        help="Bootloader of Xen PV guests, run by libxl in dom0 to read the kernel "
        "from the guest's disk. Ignored when xen_pv_kernel is set.",
    ),
    cfg.StrOpt(
        "xen_pv_kernel",
        default="",
        help="Path (on the host) of a kernel Xen PV guests boot directly. Empty "
        "boots through xen_pv_bootloader.",
    ),
    cfg.StrOpt(
        "xen_pv_ramdisk",
        default="",
        help="Path (on the host) of the initial ramdisk for xen_pv_kernel.",
    ),
    cfg.StrOpt(
        "xen_pv_cmdline",
        default="root=/dev/xvda ro console=hvc0",
        help="Kernel command line for xen_pv_kernel.",
    ),
    cfg.StrOpt(
        "storage_pool",
        default="default",
        help="Name of the libvirt storage pool that holds the instances' root "
        "volumes.",
    ),
    cfg.StrOpt(
        "volume_format",
        default="qcow2",
        choices=[("qcow2", "Thin, copy-on-write volumes."),
                 ("raw", "Plain volumes (for pools that take no qcow2).")],
        help="Format of the root volumes the driver creates.",
    ),
    cfg.StrOpt(
        "default_network",
        default="default",
        help="libvirt network a guest's first NIC joins when the instance names "
        "no network. Empty gives such a guest no NIC.",
    ),
    cfg.StrOpt(
        "bridge",
        default="",
        help="When set, NICs join this host bridge directly instead of a libvirt "
        "network (an instance network entry with a 'bridge' key overrides it).",
    ),
    cfg.FloatOpt(
        "reconnect_interval",
        default=2.0,
        min=0.1,
        help="Seconds between two attempts to re-open a dropped connection.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(libvirt_group)
    conf.register_opts(LIBVIRT_OPTS, group=libvirt_group)


def list_opts() -> dict[cfg.OptGroup, list[cfg.Opt]]:
    return {libvirt_group: LIBVIRT_OPTS}
