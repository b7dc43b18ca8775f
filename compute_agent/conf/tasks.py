"""Options of the [tasks] group: time limits and tracking of dom0 tasks."""

from oslo_config import cfg

tasks_group = cfg.OptGroup(
    "tasks",
    title="Task options",
    help="Time limits of the operations the agent runs in dom0 and how it follows "
    "the dom0 tasks behind them.",
)

TASKS_OPTS = [
    cfg.IntOpt(
        "default_timeout",
        default=600,
        min=1,
        help="Seconds an operation without a more specific limit may take before "
        "it is cancelled and reported as timed out.",
    ),
    cfg.IntOpt(
        "spawn_timeout",
        default=1800,
        min=1,
        help="Seconds an instance build may take.",
    ),
    cfg.IntOpt(
        "power_timeout",
        default=300,
        min=1,
        help="Seconds a power on or power off may take.",
    ),
    cfg.IntOpt(
        "reboot_timeout",
        default=300,
        min=1,
        help="Seconds a reboot may take.",
    ),
    cfg.IntOpt(
        "clean_shutdown_timeout",
        default=60,
        min=1,
        help="Seconds a guest gets to shut itself down on a clean stop before the "
        "agent shuts it down hard. Counts within power_timeout.",
    ),
    cfg.IntOpt(
        "soft_reboot_timeout",
        default=60,
        min=1,
        help="Seconds a guest gets to reboot itself on a SOFT reboot before the "
        "agent reboots it hard. Counts within reboot_timeout.",
    ),
    cfg.IntOpt(
        "destroy_timeout",
        default=300,
        min=1,
        help="Seconds destroying an instance may take.",
    ),
    cfg.IntOpt(
        "suspend_timeout",
        default=900,
        min=1,
        help="Seconds a suspend (the guest's memory written to disk) or a resume "
        "may take.",
    ),
    cfg.IntOpt(
        "rescue_timeout",
        default=900,
        min=1,
        help="Seconds a rescue (halting the instance, building and booting its "
        "rescue VM) or an unrescue may take.",
    ),
    cfg.IntOpt(
        "resize_timeout",
        default=1800,
        min=1,
        help="Seconds a resize (keeping a copy of the root disk, growing it, "
        "restarting the VM), a confirm or a revert of one may take.",
    ),
    cfg.IntOpt(
        "snapshot_timeout",
        default=3600,
        min=1,
        help="Seconds a snapshot may take: the dom0 snapshot, streaming its root "
        "disk to the image service and removing it from dom0.",
    ),
    cfg.IntOpt(
        "live_migration_timeout",
        default=1800,
        min=1,
        help="Seconds a live migration may take (memory and, without shared "
        "storage, the disks), counted from the destination's preparation.",
    ),
    cfg.IntOpt(
        "cold_migration_timeout",
        default=3600,
        min=1,
        help="Seconds a cold migration (a stopped instance's VM and disks to "
        "another host) may take.",
    ),
    cfg.IntOpt(
        "outcome_record_timeout",
        default=300,
        min=0,
        help="Seconds the agent keeps retrying, with a growing pause (1 s up to "
        "15 s), to record how an operation ended while the database cannot be "
        "reached. Past that the record is left to recovery, which runs when the "
        "database connection comes back. 0 tries once.",
    ),
    cfg.FloatOpt(
        "progress_write_interval",
        default=1.0,
        min=0.0,
        help="Smallest number of seconds between two writes of a task's progress "
        "to the database; progress in between is coalesced.",
    ),
    cfg.StrOpt(
        "watcher_mode",
        default="events",
        choices=[
            ("events", "One event.from long-poll per pool wakes all waiters."),
            ("polling", "Poll each task's status every poll_interval seconds."),
        ],
        help="How the agent learns that dom0 tasks progressed or finished.",
    ),
    cfg.FloatOpt(
        "poll_interval",
        default=0.5,
        min=0.01,
        help="Seconds between two polls of a task's status when watcher_mode is "
        "polling.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(tasks_group)
    conf.register_opts(TASKS_OPTS, group=tasks_group)


def list_opts() -> dict[cfg.OptGroup, list[cfg.Opt]]:
    return {tasks_group: TASKS_OPTS}
