"""Early choice of the concurrency backend from argv and config files."""

from __future__ import annotations

import subprocess
import sys

import pytest

from compute_agent.process import concurrency


def write(tmp_path, name, backend):
    path = tmp_path / name
    path.write_text(f"[DEFAULT]\nhost = h\nconcurrency_backend = {backend}\n")
    return str(path)


def test_default_is_threading(tmp_path):
    empty = tmp_path / "empty.conf"
    empty.write_text("[DEFAULT]\n")
    assert concurrency.backend_from_argv(["--config-file", str(empty)]) == "threading"


def test_last_config_file_wins(tmp_path):
    a = write(tmp_path, "a.conf", "eventlet")
    b = write(tmp_path, "b.conf", "threading")
    assert concurrency.backend_from_argv(["--config-file", a]) == "eventlet"
    assert concurrency.backend_from_argv(["--config-file", a, "--config-file", b]) == "threading"
    assert concurrency.backend_from_argv([f"--config-file={b}", f"--config-file={a}"]) == (
        "eventlet")


def test_config_dir_and_command_line(tmp_path):
    d = tmp_path / "conf.d"
    d.mkdir()
    write(d, "10-backend.conf", "eventlet")
    assert concurrency.backend_from_argv(["--config-dir", str(d)]) == "eventlet"
    assert concurrency.backend_from_argv(
        ["--config-dir", str(d), "--concurrency_backend", "threading"]) == "threading"
    assert concurrency.backend_from_argv(["--concurrency-backend=eventlet"]) == "eventlet"


def test_bad_value_is_refused(tmp_path):
    with pytest.raises(ValueError):
        concurrency.backend_from_argv(["--config-file", write(tmp_path, "x.conf", "asyncio")])


@pytest.mark.parametrize("backend", ["threading", "eventlet"])
def test_setup_patches_only_for_eventlet(backend):
    code = (
        "from compute_agent.process import concurrency\n"
        f"concurrency.setup('{backend}')\n"
        "import socket, threading\n"
        "from oslo_service import backend\n"
        "import eventlet.patcher\n"
        "print(backend.get_backend_type().value, eventlet.patcher.is_monkey_patched('socket'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out == [backend, str(backend == "eventlet")]


def test_keep_out_eventlet_leaves_the_threading_stack_working():
    """The daemon on threads keeps eventlet out; the libraries that import
    it only because it is installed (futurist, oslo.utils, oslo.messaging's
    executors) still load and run a thread pool."""
    code = (
        "import sys\n"
        "from compute_agent.process import concurrency\n"
        "concurrency.keep_out_eventlet()\n"
        "concurrency.setup('threading')\n"
        "import futurist, oslo_messaging\n"
        "from oslo_messaging.rpc import server\n"
        "from oslo_service import service\n"
        "with futurist.ThreadPoolExecutor(2) as pool:\n"
        "    result = pool.submit(lambda: 6 * 7).result()\n"
        "print(result, sys.modules['eventlet'], 'greenlet' in sys.modules and 'eventlet.hubs'"
        " in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out == ["42", "None", "False"]
