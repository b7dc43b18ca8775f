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
# Added with RPC 1.2: confirming or reverting a resize is an operation too.
RESIZE_CONFIRMING = "resize_confirming"
RESIZE_REVERTING = "resize_reverting"

TASK_STATES = (
    SPAWNING, POWERING_ON, POWERING_OFF, REBOOTING, REBOOTING_HARD, PAUSING, UNPAUSING,
    SUSPENDING, RESUMING, DELETING, IMAGE_SNAPSHOT, MIGRATING, RESIZE_MIGRATING, RESCUING,
    UNRESCUING, RESIZE_CONFIRMING, RESIZE_REVERTING,
)

# Which vm_states each request may start from. A request on an instance
# with a task_state in progress is refused as INSTANCE_BUSY before this is
# looked at; terminate of a deleted instance is a no-op, not an error.
ALLOWED_FROM: dict[str, tuple[str, ...]] = {
    "build": (),  # a build creates the instance; it never starts from a state
    "start": (STOPPED,),
    # Not from rescued: the rescue VM runs, the instance's own is halted
    # already; unrescue (or terminate) is the way out of a rescue.
    "stop": (ACTIVE, ERROR),
    "reboot_soft": (ACTIVE,),
    "reboot_hard": (ACTIVE, STOPPED, ERROR),
    "pause": (ACTIVE,),
    "unpause": (PAUSED,),
    "suspend": (ACTIVE,),
    "resume": (SUSPENDED,),
    "rescue": (ACTIVE, STOPPED, ERROR),
    "unrescue": (RESCUED,),
    "resize": (ACTIVE, STOPPED),
    "confirm_resize": (RESIZED,),
    "revert_resize": (RESIZED,),
    "snapshot": (ACTIVE, STOPPED),
    "terminate": (BUILDING, ACTIVE, STOPPED, PAUSED, SUSPENDED, RESCUED, RESIZED, ERROR),
    "live_migrate": (ACTIVE,),
    "migrate": (STOPPED,),
}
