"""Two processes (the agent and the client CLI, say) writing the same
database at once: no "database is locked", no lost update."""

import os
import subprocess
import sys
import textwrap

WRITER = textwrap.dedent("""
    import sys
    from compute_agent.db.api import Database
    db = Database(sys.argv[1])
    for i in range(int(sys.argv[3])):
        db.service_heartbeat(sys.argv[2], "compute-agent", "compute")
        db.update_instance(sys.argv[4], {"progress": i % 100})
    db.dispose()
""")


def test_two_processes_write_concurrently(database, database_url):
    uuid = database.create_instance({"uuid": "0f3d6a0e-0000-4000-8000-000000000001",
                                     "name": "shared"})["uuid"]
    count = 60
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, database_url, f"host-{n}", str(count),
                          uuid], stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
        for n in range(2)
    ]
    # This process writes too, while the two children run.
    for i in range(count):
        database.update_instance(uuid, {"task_state": None, "progress": i % 100})
        database.list_services()
    for proc in procs:
        _, err = proc.communicate(timeout=50)
        assert proc.returncode == 0, err
    reports = {s["host"]: s["report_count"] for s in database.list_services()}
    assert reports == {"host-0": count, "host-1": count}
