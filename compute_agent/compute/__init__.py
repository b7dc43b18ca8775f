"""What the ComputeManager (manager.py) is built from.

states (vm_state / task_state rules), requests (the table of requests the
manager runs and recovery settles), locks, workers, build_slots, outcomes,
recovery (with recovery_rules and recovery_settle), power_sync, host_status, validation and the
task_listener that records the driver's dom0 tasks. manager.py is the thin
facade from RPC method to request; these modules do the work, one job each.
"""
