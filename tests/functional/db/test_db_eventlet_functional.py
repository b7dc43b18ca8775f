"""The Database API under the eventlet backend, in a monkey-patched child
process (patching this pytest process would affect every other test)."""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import sys
    import eventlet
    # "all" is what the agent does; "no-psycopg" leaves psycopg2 to
    # compute_agent.db.green instead of eventlet's own wait callback.
    eventlet.monkey_patch(psycopg=sys.argv[3] == "all")
    import sqlalchemy as sa
    from compute_agent.db.api import Database

    backend, url = sys.argv[1], sys.argv[2]
    db = Database(url)
    db.check_migrated()

    # Green threads share the Database: each creates and updates its instance.
    def work(n):
        uuid = f"00000000-0000-4000-8000-{n:012d}"
        db.create_instance({"uuid": uuid, "name": f"vm-{n}"})
        for p in range(5):
            db.update_instance(uuid, {"progress": p}, expected_task_state=None)
        db.service_heartbeat(f"h{n}", "compute-agent", "compute")
        return db.get_instance(uuid)["progress"]

    pool = eventlet.GreenPool(8)
    assert list(pool.imap(work, range(8))) == [4] * 8
    assert len(db.list_instances()) == 8

    if backend == "postgresql":
        # While one green thread waits on the server, the others keep running:
        # a blocked hub would let the ticker run at most once.
        ticks = []
        done = []

        def ticker():
            while not done:
                ticks.append(1)
                eventlet.sleep(0.01)

        def slow_query():
            with db.engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_sleep(0.5)"))
            done.append(1)

        t = eventlet.spawn(ticker)
        slow_query()
        t.wait()
        assert len(ticks) >= 5, ticks
    db.dispose()
    print("ok")
""")


@pytest.mark.parametrize("patching", ["all", "no-psycopg"])
def test_database_api_under_eventlet(database_url, patching):
    backend = database_url.split(":", 1)[0].split("+", 1)[0]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, backend, database_url, patching],
                          capture_output=True, text=True, timeout=50, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok"
