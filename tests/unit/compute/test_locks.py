"""Per-instance locks."""

from __future__ import annotations

import threading

from compute_agent.compute.locks import InstanceLocks


def test_same_instance_is_serialised_and_entries_are_dropped():
    locks = InstanceLocks()
    inside = []
    overlap = []
    start = threading.Barrier(4)

    def worker():
        start.wait()
        for _ in range(50):
            with locks.hold("a"):
                inside.append(1)
                if len(inside) > 1:
                    overlap.append(1)
                inside.pop()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert overlap == []
    assert len(locks) == 0


def test_different_instances_do_not_block_each_other():
    locks = InstanceLocks()
    with locks.hold("a"):
        got = threading.Event()

        def other():
            with locks.hold("b"):
                got.set()

        t = threading.Thread(target=other)
        t.start()
        assert got.wait(10)
        t.join(10)
