"""RPC 1.5 end to end: a real xapi-sim process, a real compute-agent
(SQLite, RabbitMQ), compute-agent-novncproxy, headless Chromium and a real
Prometheus server.

- get_vnc_console's URL opens the instance's screen in the browser;
- get_console_output returns the end of the guest's boot log, and the new
  one after the guest reboots;
- get_diagnostics has the documented shape;
- Prometheus scrapes the agent's /metrics and answers PromQL for the
  instance's CPU and the RPC counter with the expected labels;
- the agent reads /rrd_updates once per host and interval (counted at the
  simulator) while 100 more instances run.
"""

from __future__ import annotations

import io
import json
import subprocess
import time
import urllib.parse
import urllib.request
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from novnc_fixtures import ProxyProcess, chromium, token_path, websocket_upgrade
from PIL import Image

from compute_agent import exceptions
from tests.functional.agent_stack import AgentStack
from tests.functional.e2e.stack import instance_spec
from tests.functional.harness import START_LIMIT_S, free_port, kill_group, tail, wait_until
from tests.functional.xapisim.simvm import make_vm
from xapisim import framebuffer

RRD_INTERVAL = 5


class Stack(AgentStack):
    """The agent stack (agent_stack.py) on SQLite with its metrics endpoint
    and its console proxy, and a running instance built through it."""

    def __init__(self, workdir: Path):
        self.metrics_port, proxy_port = free_port(), free_port()
        super().__init__(
            workdir, "console", task_duration=0.05, manage_db_sync=True,
            options={"metrics": {"listen": f"127.0.0.1:{self.metrics_port}",
                                 "rrd_interval": RRD_INTERVAL},
                     "console": {"novncproxy_base_url":
                                 f"http://127.0.0.1:{proxy_port}/vnc_lite.html",
                                 "novncproxy_host": "127.0.0.1",
                                 "novncproxy_port": proxy_port}})
        self.proxy = ProxyProcess(self.agent.config, proxy_port, workdir)

    def start(self) -> Stack:
        super().start()
        self.proxy.start()
        body = instance_spec("console-e2e-vm")
        self.api.build_instance(self.host, body, confirm=True)
        wait_until(lambda: self.api.get_instance(self.host, body["uuid"])["vm_state"]
                   == "active", 60, "the build")
        self.uuid, self.name = body["uuid"], body["name"]
        return self

    def close(self) -> None:
        self.proxy.stop()
        super().close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("consoles")) as s:
        yield s.start()


def test_vnc_console_opens_in_a_browser(stack: Stack):
    console = stack.api.get_vnc_console(stack.agent.host, stack.uuid)
    assert set(console) == {"instance_uuid", "protocol", "url", "token", "expires_at"}
    assert console["url"].startswith(f"http://127.0.0.1:{stack.proxy.port}/vnc_lite.html?")
    vm_uuid = stack.api.get_diagnostics(stack.agent.host, stack.uuid)["vm_uuid"]
    expected = framebuffer.render(stack.name, vm_uuid)
    browser = chromium()
    try:
        browser.get(console["url"])

        def screen() -> Image.Image | None:
            canvases = browser.find_elements("css selector", "#screen canvas")
            if not canvases or canvases[0].size["width"] != framebuffer.WIDTH:
                return None
            img = Image.open(io.BytesIO(canvases[0].screenshot_as_png)).convert("RGB")
            return img if img.getpixel((2, 2)) == framebuffer.BACKGROUND else None

        shot = wait_until(screen, 30, "the instance's screen", 0.2)
        top = (0, 0, framebuffer.WIDTH, framebuffer.STATUS_BOX[1])
        got, want = shot.crop(top).tobytes(), expected.crop(top).tobytes()
        same = sum(1 for i in range(0, len(want), 3) if got[i:i + 3] == want[i:i + 3])
        assert same / (len(want) // 3) > 0.999
    finally:
        browser.quit()
    # used once: the same URL is refused now
    assert websocket_upgrade(stack.proxy.port, token_path(console["token"]))[0] == 403
    # a secret: in no log of the agent or the proxy (both log to the agent's
    # log file, at debug level), while the instance is named there
    logs = stack.agent.log_file.read_text() + stack.proxy.stderr_file.read_text()
    assert f"console of instance {stack.uuid} opened" in logs
    assert console["token"] not in logs


def test_console_output_follows_the_guest(stack: Stack):
    api, host = stack.api, stack.agent.host
    out = api.get_console_output(host, stack.uuid)
    assert "Linux version" in out["output"] and out["truncated"] is False
    last = api.get_console_output(host, stack.uuid, tail_length=2)
    assert last["output"].splitlines()[-1].endswith(f"{stack.name} login:")
    assert len(last["output"].splitlines()) == 2 and last["truncated"] is True
    for bad in (0, -1, "3", True, 10001):
        with pytest.raises(exceptions.ComputeAgentError) as e:
            api.get_console_output(host, stack.uuid, tail_length=bad)
        assert e.value.code == "INVALID_INPUT" and e.value.params[0] == "tail_length"
    with pytest.raises(exceptions.ComputeAgentError) as e:
        api.get_console_output(host, str(uuidlib.uuid4()))
    assert e.value.code == "INSTANCE_NOT_FOUND"

    # the guest reboots itself: a new domain, a new log from its boot on
    vm_uuid = api.get_diagnostics(host, stack.uuid)["vm_uuid"]
    with stack.sim.session() as x:
        old_domid = x.VM.get_domid(x.VM.get_by_uuid(vm_uuid))
    stack.sim.control.guest_reboot(vm_uuid)
    with stack.sim.session() as x:
        wait_until(lambda: x.VM.get_domid(x.VM.get_by_uuid(vm_uuid)) not in (old_domid, "-1"),
                   10, "the new domain")
    after = api.get_console_output(host, stack.uuid)["output"]
    assert after.splitlines()[0].endswith("Linux version 6.1.0-xapisim (builder@xapi-sim) #1 SMP")
    assert "Restarting system" not in after


def test_diagnostics_shape(stack: Stack):
    d = stack.api.get_diagnostics(stack.agent.host, stack.uuid)
    assert set(d) == {"instance_uuid", "name", "host", "vm_uuid", "sampled_at", "step", "cpu",
                      "memory", "disks", "nics"}
    assert d["instance_uuid"] == stack.uuid and d["name"] == stack.name
    assert d["step"] == 5 and d["cpu"]["count"] == 1
    assert 0.01 <= d["cpu"]["average"] <= 0.95
    assert d["memory"]["total_bytes"] > 0
    assert [x["device"] for x in d["disks"]] == ["xvda"]
    # the scheduler's view of the host gains its CPU utilisation (the
    # simulator's host cpu_avg walks in [0.01, 0.9])
    resources = stack.api.get_host_status(stack.agent.host)["resources"]
    assert 0.01 <= resources["cpu_utilisation"] <= 0.9


def _prometheus(tmp: Path, target_port: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: compute-agent\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n")
    log = tmp / "prometheus.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, port


def _query(port: int, promql: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            doc = json.load(resp)
    except OSError:
        return []
    assert doc["status"] == "success", doc
    return doc["data"]["result"]


def test_prometheus_answers_promql_for_the_agents_metrics(stack: Stack, tmp_path: Path):
    api, host = stack.api, stack.agent.host
    api.get_diagnostics(host, stack.uuid)  # one more RPC to count
    proc, port = _prometheus(tmp_path, stack.metrics_port)
    try:
        cpu = wait_until(lambda: _query(
            port, f'compute_agent_instance_cpu_utilisation_ratio{{uuid="{stack.uuid}"}}'),
            START_LIMIT_S, f"Prometheus to have the instance's CPU: "
                           f"{tail(tmp_path / 'prometheus.log', 800)}", 0.5)
        labels = cpu[0]["metric"]
        assert labels["name"] == stack.name and labels["host"] == host
        assert labels["job"] == "compute-agent"
        assert 0.01 <= float(cpu[0]["value"][1]) <= 0.95
        rpc = wait_until(lambda: _query(
            port, 'compute_agent_rpc_requests_total{method="get_diagnostics",'
                  'outcome="success"}'), 20, "the RPC counter", 0.5)
        assert float(rpc[0]["value"][1]) >= 1
        host_cpu = _query(port, f'compute_agent_host_cpu_utilisation_ratio{{host="{host}"}}')
        assert host_cpu and 0.01 <= float(host_cpu[0]["value"][1]) <= 0.9
        assert _query(port, "sum(compute_agent_task_wait_seconds_count)")
    finally:
        kill_group(proc, wait=10)


def test_one_rrd_request_per_interval_with_100_instances(stack: Stack):
    """100 more VMs, marked as the agent's, run on the host; over two
    intervals the simulator sees one /rrd_updates per interval (give or
    take the one in progress at either end), and every VM is in /metrics."""
    uuids = []
    with stack.sim.session() as x:
        for i in range(100):
            uuid = str(uuidlib.uuid4())
            vm = make_vm(x, f"bulk{i:03}", memory=128 * 1024 * 1024, disk=False, vif=False,
                         other_config={"compute_agent_instance_uuid": uuid,
                                       "compute_agent_host": stack.agent.host})
            x.VM.start(vm, False, False)
            uuids.append(uuid)
    ctl = stack.sim.control

    def scraped() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_port}/metrics",
                                    timeout=5) as resp:
            return resp.read().decode()

    wait_until(lambda: all(u in scraped() for u in uuids), 3 * RRD_INTERVAL + 10,
               "the 100 instances in /metrics", 0.5)
    ctl.clear()
    started = time.monotonic()
    time.sleep(2 * RRD_INTERVAL + 0.5)
    elapsed = time.monotonic() - started
    n = ctl.http_requests("/rrd_updates")
    intervals = elapsed / RRD_INTERVAL
    assert int(intervals) <= n <= int(intervals) + 1, (n, elapsed)


def test_metrics_endpoint_under_eventlet_with_the_fake_driver(tmp_path: Path):
    """The other concurrency backend: /metrics answers from a green agent,
    the fake driver's figures labelled like the XenAPI driver's."""
    port = free_port()
    with AgentStack(tmp_path, "console", driver="fake", concurrency="eventlet",
                    manage_db_sync=True,
                    options={"metrics": {"listen": f"127.0.0.1:{port}",
                                         "rrd_interval": RRD_INTERVAL}}) as stack:
        stack.start()
        rpc, agent = stack.rpc, stack.agent
        body = instance_spec("green-vm")
        rpc.api.build_instance(agent.host, body, confirm=True)
        wait_until(lambda: rpc.api.get_instance(agent.host, body["uuid"])["vm_state"]
                   == "active", 30, "the build")

        def scraped() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return r.read().decode()

        line = (f'compute_agent_instance_cpu_utilisation_ratio{{host="{agent.host}",'
                f'name="green-vm",uuid="{body["uuid"]}"}} 0.25')
        def with_instance() -> str | None:
            text = scraped()
            return text if line in text else None

        text = wait_until(with_instance, 3 * RRD_INTERVAL + 10, "the instance in /metrics", 0.5)
        assert ('compute_agent_rpc_requests_total{method="build_instance",outcome="success"}'
                in text)
        assert 'compute_agent_task_wait_seconds_count{operation="spawn"}' in text
