"""rrd_parse on hand-written xport documents: newest row wins, NaN falls
back to an older row, other consolidation functions are skipped, chunk
boundaries anywhere, bad documents refused with a structured error; and
the pure figure functions of rrd."""

from __future__ import annotations

import io
import json

import pytest

from compute_agent.driver.xenapi import rrd, rrd_parse

VM = "0e2d7a43-6e2c-4b53-9b6e-53d0c41b4a56"
HOST = "7d2bbd33-8a6d-4d3c-86b1-0aa3f8cfbd52"
LEGEND = [f"AVERAGE:vm:{VM}:cpu0", f"AVERAGE:vm:{VM}:memory", f"MAX:vm:{VM}:cpu0",
          f"AVERAGE:host:{HOST}:cpu_avg"]
ROWS = [(1000, ["NaN", "1073741824", "0.9", "0.25"]),
        (995, ["0.5", "1073741824", "0.8", "0.5"])]


def xml_doc() -> bytes:
    legend = "".join(f"<entry>{e}</entry>" for e in LEGEND)
    rows = "".join(f"<row><t>{t}</t>" + "".join(f"<v>{v}</v>" for v in vs) + "</row>"
                   for t, vs in ROWS)
    return (f'<?xml version="1.0"?><xport><meta><start>990</start><step>5</step>'
            f"<end>1000</end><rows>2</rows><columns>4</columns><legend>{legend}</legend>"
            f"</meta><data>{rows}</data></xport>").encode()


def json_doc() -> bytes:
    return json.dumps({"meta": {"start": "990", "step": "5", "end": "1000", "rows": "2",
                                "columns": "4", "legend": LEGEND},
                       "data": [{"t": str(t), "values": vs} for t, vs in ROWS]}).encode()


class Trickle(io.RawIOBase):
    """A stream that hands out ``n`` bytes at a time."""

    def __init__(self, data: bytes, n: int):
        self.data, self.n = data, n

    def read(self, size: int = -1) -> bytes:
        out, self.data = self.data[:self.n], self.data[self.n:]
        return out


@pytest.mark.parametrize("parse,doc", [(rrd_parse.parse_xml, xml_doc),
                                       (rrd_parse.parse_json, json_doc)])
@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_newest_non_nan_value_per_source(parse, doc, chunk, monkeypatch):
    monkeypatch.setattr(rrd_parse, "CHUNK", chunk)
    u = parse(Trickle(doc(), chunk))
    assert (u.start, u.step, u.end, u.rows) == (990, 5, 1000, 2)
    # cpu0 is NaN in the newest row: the older one's 0.5; MAX columns ignored
    assert u.objects[("vm", VM)] == {"cpu0": 0.5, "memory": 1073741824.0}
    assert u.objects[("host", HOST)] == {"cpu_avg": 0.25}
    assert u.times[("vm", VM)] == 1000


@pytest.mark.parametrize("parse,doc", [
    (rrd_parse.parse_xml, b"<xport><meta><legend><entry>nonsense</entry></legend></meta>"),
    (rrd_parse.parse_xml, b"<xport><meta>"),
    (rrd_parse.parse_json, b'{"meta": {"legend": ["AVERAGE:vm:x:cpu0"]}, "data": '
                           b'[{"t": "1", "values": ["1", "2"]}]}'),
    (rrd_parse.parse_json, b'{"meta": '),
    (rrd_parse.parse_json, b'{"meta": {"legend": ["AVERAGE:vm:x:cpu0"]}, "data": '
                           b'[{"t": "1", "values": ["lots"]}]}'),
])
def test_bad_documents_are_refused(parse, doc):
    with pytest.raises(rrd_parse.RrdParseError) as e:
        parse(io.BytesIO(doc))
    assert e.value.code == "RRD_UPDATES_INVALID"


def test_document_size_is_bounded(monkeypatch):
    monkeypatch.setattr(rrd_parse, "MAX_DOCUMENT_BYTES", 100)
    with pytest.raises(rrd_parse.RrdParseError):
        rrd_parse.parse_xml(io.BytesIO(xml_doc()))


def test_figures():
    vm = rrd.vm_figures({"cpu1": 0.5, "cpu0": 0.25, "memory": 2048.0,
                         "memory_internal_free": 1.0, "vif_0_rx": 10.0, "vif_0_tx": 20.0,
                         "vbd_xvda_read": 1.0, "vbd_xvda_write": 2.0})
    assert vm == {
        "cpu": {"count": 2, "utilisation": [0.25, 0.5], "average": 0.375},
        "memory": {"total_bytes": 2048, "free_bytes": 1024},
        "disks": [{"device": "xvda", "read_bytes_per_second": 1.0,
                   "write_bytes_per_second": 2.0}],
        "nics": [{"device": "0", "rx_bytes_per_second": 10.0, "tx_bytes_per_second": 20.0}],
    }
    host = rrd.host_figures({"cpu0": 0.2, "cpu1": 0.4, "memory_total_kib": 4.0,
                             "memory_free_kib": 1.0, "loadavg": 0.7,
                             "pif_eth0_rx": 5.0, "pif_eth0_tx": 6.0})
    assert host["cpu"]["average"] == pytest.approx(0.3)
    assert host["memory"] == {"total_bytes": 4096, "free_bytes": 1024}
    assert host["load_average"] == 0.7
    assert host["nics"] == [{"device": "eth0", "rx_bytes_per_second": 5.0,
                             "tx_bytes_per_second": 6.0}]
    empty = rrd.vm_figures({})
    assert empty["cpu"] == {"count": 0, "utilisation": [], "average": None}
