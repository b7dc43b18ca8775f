"""Simulated round-robin databases: the data sources xcp-rrdd keeps per
running VM and per host, with values that look alive but are reproducible.

Each data source's value at time t is a smooth pseudo-random walk: hashed
lattice points at three time scales (30 s, 5 min, 1 h), interpolated and
summed, seeded by the object's uuid and the source's name. The same object
and time always give the same number, so tests can assert ranges:

======================= ======================================================
source                  range
======================= ======================================================
VM cpuN                 [0.01, 0.95] (fraction of one physical CPU)
VM memory               the VM's memory_actual (else memory_target), constant
VM memory_internal_free [5 %, 60 %] of ``memory`` in KiB
VM vif_<dev>_rx/tx      [0, 10 MB/s]
VM vbd_<dev>_read/write [0, 100 MB/s]
host cpuN, cpu_avg      [0.01, 0.9]
host memory_total_kib   host_metrics.memory_total / 1024, constant
host memory_free_kib    host_metrics.memory_free / 1024, constant
host pif_<dev>_rx/tx    [0, 50 MB/s]
host loadavg            [0.05, number of host CPUs]
======================= ======================================================

Archives follow xcp-rrdd's defaults: a 5 s step; 120 rows of 5 s, 120 of
1 min, 168 of 1 h, 366 of 1 day; AVERAGE, MIN and MAX for every object
(xapi keeps MIN/MAX for VMs only when the pool asks; here they always
exist). A VM's values before its start_time are NaN, as a fresh RRD's.
"""

from __future__ import annotations

import calendar
import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xapisim.services import SimServices

STEP = 5
# (PDPs per row, rows): 10 minutes, 2 hours, a week, a year
ARCHIVES = [(1, 120), (12, 120), (720, 168), (17280, 366)]
CFS = ("AVERAGE", "MIN", "MAX")
_OCTAVES = ((30, 0.2), (300, 0.35), (3600, 0.45))
_LOW48 = (1 << 48) - 1
_SPAN48 = float(1 << 48)
# a coarse row is summarised from this many evenly spread samples
_SAMPLES = 12


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.blake2b("\0".join(parts).encode(), digest_size=8).digest(),
                          "big")


def noise(seed: int, t: float) -> float:
    """A smooth pseudo-random function of time in [0, 1). The lattice
    values come from hashing int tuples (deterministic, unlike str hashes,
    and four times cheaper than a hash written in Python)."""
    total = 0.0
    for scale, weight in _OCTAVES:
        k, rest = divmod(t, scale)
        k = int(k)
        f = rest / scale
        f = f * f * (3 - 2 * f)
        a = (hash((seed, scale, k)) & _LOW48) / _SPAN48
        b = (hash((seed, scale, k + 1)) & _LOW48) / _SPAN48
        total += weight * (a + (b - a) * f)
    return total


@dataclass
class Source:
    name: str
    lo: float
    hi: float
    kind: str = "GAUGE"  # how rrdd declares it: GAUGE, DERIVE
    ds_max: float = math.inf
    seed: int = 0

    def at(self, t: float) -> float:
        if self.lo == self.hi:
            return self.lo
        return self.lo + (self.hi - self.lo) * noise(self.seed, t)


@dataclass
class Rrd:
    """One object's RRD: ``prefix`` is ``host:<uuid>:`` or ``vm:<uuid>:``."""

    prefix: str
    sources: list[Source]
    born: float = -math.inf  # values before this time are NaN
    last_updated: int = 0
    cache: dict = field(default_factory=dict)

    def row(self, pdp_cnt: int, end: int) -> dict[str, list[float]]:
        """AVERAGE, MIN and MAX of every source over the ``pdp_cnt`` steps
        ending at ``end`` (a row of an archive)."""
        key = (pdp_cnt, end)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        span = pdp_cnt * STEP
        n = min(pdp_cnt, _SAMPLES)
        times = [end - span + STEP + (span - STEP) * i / max(n - 1, 1) for i in range(n)] \
            if n > 1 else [float(end)]
        # a sample stands for the STEP before it: the first one after the
        # object's birth already counts
        times = [t for t in times if t + STEP > self.born]
        out: dict[str, list[float]] = {cf: [] for cf in CFS}
        for src in self.sources:
            if not times:
                for cf in CFS:
                    out[cf].append(math.nan)
                continue
            values = [src.at(t) for t in times]
            out["AVERAGE"].append(sum(values) / len(values))
            out["MIN"].append(min(values))
            out["MAX"].append(max(values))
        self.cache[key] = out
        return out

    def current(self) -> list[float]:
        return self.row(1, self.last_updated)["AVERAGE"]


def last_update_time(now: float | None = None) -> int:
    """rrdd samples every STEP seconds: the time of its latest sample."""
    now = time.time() if now is None else now
    return int(now) // STEP * STEP


def _datetime_seconds(value: str) -> float:
    try:
        t = calendar.timegm(time.strptime(str(value), "%Y%m%dT%H:%M:%SZ"))
    except ValueError:
        return -math.inf
    return t if t > 86400 else -math.inf  # the 1970 default means "unknown"


def _vbd_device(rec: dict) -> str:
    if rec.get("device"):
        return rec["device"]
    try:
        return "xvd" + chr(ord("a") + int(rec.get("userdevice") or 0))
    except ValueError:
        return "xvd" + str(rec.get("userdevice"))


def vm_rrd(sim: SimServices, vm: str, now: float | None = None) -> Rrd:
    store = sim.store
    with store.lock:
        rec = store.raw("VM", vm)
        uuid = rec["uuid"]
        metrics = store.tables["VM_metrics"].get(rec["metrics"], {})
        vcpus = metrics.get("VCPUs_number") or rec["VCPUs_at_startup"] or 1
        memory = metrics.get("memory_actual") or rec["memory_target"] or \
            rec["memory_dynamic_max"]
        start = metrics.get("start_time", "")
        vifs = sorted(store.raw("VIF", v)["device"] for v in rec["VIFs"] if store.has("VIF", v))
        vbds = sorted(
            _vbd_device(store.raw("VBD", b)) for b in rec["VBDs"]
            if store.has("VBD", b) and store.raw("VBD", b)["type"] == "Disk"
            and not store.raw("VBD", b)["empty"]
        )
    seed = _seed(uuid, "cpu-ceiling")
    cpu_hi = 0.3 + 0.65 * (seed % 1000) / 1000
    sources = [Source(f"cpu{i}", 0.01, cpu_hi, "DERIVE", 1.0) for i in range(int(vcpus))]
    sources.append(Source("memory", float(memory), float(memory)))
    kib = memory / 1024
    sources.append(Source("memory_internal_free", 0.05 * kib, 0.6 * kib))
    for dev in vifs:
        sources += [Source(f"vif_{dev}_rx", 0, 1e7, "DERIVE"), Source(f"vif_{dev}_tx", 0, 1e7,
                                                                       "DERIVE")]
    for dev in vbds:
        sources += [Source(f"vbd_{dev}_read", 0, 1e8, "DERIVE"),
                    Source(f"vbd_{dev}_write", 0, 1e8, "DERIVE")]
    for s in sources:
        s.seed = _seed(uuid, s.name)
    born = -math.inf if rec["is_control_domain"] else _datetime_seconds(start)
    return Rrd(f"vm:{uuid}:", sources, born, last_update_time(now))


def host_rrd(sim: SimServices, host: str, now: float | None = None) -> Rrd:
    store = sim.store
    with store.lock:
        rec = store.raw("host", host)
        uuid = rec["uuid"]
        metrics = store.tables["host_metrics"].get(rec["metrics"], {})
        cpus = len(rec["host_CPUs"]) or 1
        total = metrics.get("memory_total", 0)
        free = metrics.get("memory_free", 0)
        pifs = sorted(store.raw("PIF", p)["device"] for p in rec["PIFs"] if store.has("PIF", p))
    sources = [Source(f"cpu{i}", 0.01, 0.9, "DERIVE", 1.0) for i in range(cpus)]
    sources.append(Source("cpu_avg", 0.01, 0.9, "GAUGE", 1.0))
    sources.append(Source("memory_total_kib", total / 1024, total / 1024))
    sources.append(Source("memory_free_kib", free / 1024, free / 1024))
    for dev in pifs:
        sources += [Source(f"pif_{dev}_rx", 0, 5e7, "DERIVE"),
                    Source(f"pif_{dev}_tx", 0, 5e7, "DERIVE")]
    sources.append(Source("loadavg", 0.05, float(cpus)))
    for s in sources:
        s.seed = _seed(uuid, s.name)
    return Rrd(f"host:{uuid}:", sources, -math.inf, last_update_time(now))


def resident_vms(sim: SimServices, host: str) -> list[str]:
    """VMs whose RRDs this host's rrdd keeps: those running (or paused) here."""
    store = sim.store
    with store.lock:
        return [
            ref for ref, rec in store.tables["VM"].items()
            if rec["resident_on"] == host and rec["power_state"] in ("Running", "Paused")
        ]


# -- the API's view of the same numbers (host/VM.get_data_sources, query_data_source) --

_UNITS = {"cpu": "(fraction)", "memory": "B", "memory_internal_free": "KiB",
          "memory_total_kib": "KiB", "memory_free_kib": "KiB", "loadavg": "(fraction)"}


def _rrd_of(sim: SimServices, cls: str, ref: str) -> Rrd:
    return vm_rrd(sim, ref) if cls == "VM" else host_rrd(sim, ref)


def current_value(sim: SimServices, cls: str, ref: str, name: str) -> float | None:
    """The latest value of data source ``name`` of a VM or host (what
    ``query_data_source`` answers), or None if it has no such source."""
    rrd = _rrd_of(sim, cls, ref)
    for src, value in zip(rrd.sources, rrd.current(), strict=True):
        if src.name == name:
            return value
    return None


def data_source_records(sim: SimServices, cls: str, ref: str) -> list[dict]:
    """``data_source`` records for ``get_data_sources``."""
    rrd = _rrd_of(sim, cls, ref)
    out = []
    for src, value in zip(rrd.sources, rrd.current(), strict=True):
        unit = _UNITS.get(src.name, "(fraction)" if src.name.startswith("cpu") else "B/s")
        out.append({
            "name_label": src.name, "name_description": "", "enabled": True,
            "standard": True, "units": unit, "min": 0.0,
            # rrdd's max is often unbounded; the walk's ceiling is finite
            "max": src.ds_max if math.isfinite(src.ds_max) else float(src.hi),
            "value": 0.0 if math.isnan(value) else value,
        })
    return out
