"""Errors raised only by the database layer.

They follow compute_agent.exceptions (a code plus params) so the manager can
turn any of them into a fault or an RPC error unchanged.
"""

from compute_agent.exceptions import ComputeAgentError


class DatabaseUnavailable(ComputeAgentError):
    """params: the database URL with its password hidden, the reason."""

    code = "DATABASE_UNAVAILABLE"
    msg_fmt = "Cannot reach the database at {0}: {1}"


class InstanceActionNotFound(ComputeAgentError):
    code = "INSTANCE_ACTION_NOT_FOUND"
    msg_fmt = "Instance {0} has no action for request {1}"


class TrackedTaskNotFound(ComputeAgentError):
    code = "TRACKED_TASK_NOT_FOUND"
    msg_fmt = "No tracked task {0}"


class TrackedTaskExists(ComputeAgentError):
    code = "TRACKED_TASK_EXISTS"
    msg_fmt = "Task {0} is already tracked"
