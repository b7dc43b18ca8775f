"""The stable lifecycle states (vm_state) and the operations in progress
(task_state) of an instance, and which operation may start from where.

power_state is the hypervisor's and lives in driver/power_state.py.
"""

from __future__ import annotations

# vm_state
BUILDING = "building"
ACTIVE = "active"
STOPPED = "stopped"
PAUSED = "paused"
SUSPENDED = "suspended"
RESCUED = "rescued"
RESIZED = "resized"
ERROR = "error"
DELETED = "deleted"

VM_STATES = (BUILDING, ACTIVE, STOPPED, PAUSED, SUSPENDED, RESCUED, RESIZED, ERROR, DELETED)

# task_state (None = no operation in progress)
SPAWNING = "spawning"
POWERING_ON = "powering_on"
POWERING_OFF = "powering_off"
REBOOTING = "rebooting"
REBOOTING_HARD = "rebooting_hard"
PAUSING = "pausing"
UNPAUSING = "unpausing"
SUSPENDING = "suspending"
RESUMING = "resuming"
DELETING = "deleting"
IMAGE_SNAPSHOT = "image_snapshot"
MIGRATING = "migrating"
RESIZE_MIGRATING = "resize_migrating"
RESCUING = "rescuing"
UNRESCUING = "unrescuing"

TASK_STATES = (
    SPAWNING, POWERING_ON, POWERING_OFF, REBOOTING, REBOOTING_HARD, PAUSING, UNPAUSING,
    SUSPENDING, RESUMING, DELETING, IMAGE_SNAPSHOT, MIGRATING, RESIZE_MIGRATING, RESCUING,
    UNRESCUING,
)

# Which vm_states each request may start from. A request on an instance
# with a task_state in progress is refused as INSTANCE_BUSY before this is
# looked at; terminate of a deleted instance is a no-op, not an error.
ALLOWED_FROM: dict[str, tuple[str, ...]] = {
    "build": (),  # a build creates the instance; it never starts from a state
    "start": (STOPPED,),
    "stop": (ACTIVE, ERROR, RESCUED),
    "reboot_soft": (ACTIVE,),
    "reboot_hard": (ACTIVE, STOPPED, ERROR),
    "terminate": (BUILDING, ACTIVE, STOPPED, PAUSED, SUSPENDED, RESCUED, RESIZED, ERROR),
    "live_migrate": (ACTIVE,),
    "migrate": (STOPPED,),
}
