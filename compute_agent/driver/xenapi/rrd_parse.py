"""Incremental parsers of xcp-rrdd's ``/rrd_updates`` document (rrdtool
``xport`` layout), XML or JSON, read from a stream in bounded chunks.

Both give an ``RrdUpdate``: the archive's start, step and end, and for
every object in the legend (``host:<uuid>`` or ``vm:<uuid>``) the newest
value of each of its data sources (``cpu0``, ``memory``,
``vif_0_rx``...). Rows come newest first; a NaN (no data yet) falls back
to the next older row, and a source NaN in every row is left out. Only
the legend and one number per column are kept, so memory does not grow
with the number of rows; the document's text is never held whole.

Legend entries look like ``AVERAGE:vm:<uuid>:cpu0``; entries of another
consolidation function than the one asked for are skipped, unknown object
kinds (``sr``) are kept under their kind.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import ijson

from compute_agent import exceptions

CHUNK = 64 * 1024
# rrdd's documents stay well below this; a longer one is not rrdd talking
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024


class RrdParseError(exceptions.ComputeAgentError):
    """params: what was wrong with the document."""

    code = "RRD_UPDATES_INVALID"
    msg_fmt = "Unreadable /rrd_updates document: {0}"


@dataclass
class RrdUpdate:
    start: int = 0
    step: int = 0
    end: int = 0
    rows: int = 0
    # (kind, uuid) -> {source name: newest value}; every object of the legend
    # is here, even one with no value yet
    objects: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    # time of the newest row that gave a value, per object
    times: dict[tuple[str, str], int] = field(default_factory=dict)

    def of_kind(self, kind: str) -> dict[str, dict[str, float]]:
        return {uuid: values for (k, uuid), values in self.objects.items() if k == kind}


class _Columns:
    """The state both parsers share: the legend, and per column the newest
    non-NaN value and its row time."""

    def __init__(self, cf: str):
        self.cf = cf
        self.update = RrdUpdate()
        self.columns: list[tuple[tuple[str, str], str] | None] = []
        self.best: list[int] = []
        self.row_time = 0
        self.col = 0

    def legend_entry(self, entry: str) -> None:
        parts = entry.split(":", 3)
        if len(parts) != 4 or not parts[2]:
            raise RrdParseError(f"legend entry {entry!r}")
        cf, kind, uuid, name = parts
        if cf != self.cf:
            self.columns.append(None)
        else:
            key = (kind, uuid)
            self.update.objects.setdefault(key, {})
            self.columns.append((key, name))
        self.best.append(-1)

    def row_start(self) -> None:
        self.col = 0
        self.update.rows += 1

    def row_time_is(self, text: str) -> None:
        self.row_time = _int(text, "row time")

    def value(self, text: str | float) -> None:
        col = self.col
        self.col += 1
        if col >= len(self.columns):
            raise RrdParseError(f"row at {self.row_time} has more values than the legend")
        target = self.columns[col]
        if target is None or self.row_time <= self.best[col]:
            return
        number = _float(text)
        if math.isnan(number):
            return
        key, name = target
        self.best[col] = self.row_time
        self.update.objects[key][name] = number
        if self.row_time > self.update.times.get(key, -1):
            self.update.times[key] = self.row_time


def _int(text: str | None, what: str) -> int:
    try:
        return int(float(text or ""))
    except ValueError:
        raise RrdParseError(f"{what} {text!r} is not a number") from None


def _float(text: str | float) -> float:
    if isinstance(text, int | float):
        return float(text)
    try:
        return float(text)  # also "NaN", "Infinity", "-Infinity"
    except ValueError:
        raise RrdParseError(f"value {text!r} is not a number") from None


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    total = 0
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            return
        total += len(chunk)
        if total > MAX_DOCUMENT_BYTES:
            raise RrdParseError(f"document larger than {MAX_DOCUMENT_BYTES} bytes")
        yield chunk


def parse_xml(stream: BinaryIO, cf: str = "AVERAGE") -> RrdUpdate:
    cols = _Columns(cf)
    meta = cols.update
    parser = ET.XMLPullParser(events=("start", "end"))
    try:
        for chunk in _chunks(stream):
            parser.feed(chunk)
            for event, elem in parser.read_events():
                tag = elem.tag
                if event == "start":
                    if tag == "row":
                        cols.row_start()
                    continue
                if tag == "entry":
                    cols.legend_entry(elem.text or "")
                elif tag == "t":
                    cols.row_time_is(elem.text)
                elif tag == "v":
                    cols.value(elem.text or "")
                elif tag in ("start", "step", "end"):
                    setattr(meta, tag, _int(elem.text, tag))
                elif tag == "row":
                    elem.clear()  # the row's values are consumed
        parser.close()
    except ET.ParseError as e:
        raise RrdParseError(f"XML: {e}") from None
    return meta


def parse_json(stream: BinaryIO, cf: str = "AVERAGE") -> RrdUpdate:
    cols = _Columns(cf)
    meta = cols.update
    try:
        for prefix, event, value in ijson.parse(_ChunkReader(stream)):
            if prefix == "data.item" and event == "start_map":
                cols.row_start()
            elif prefix == "data.item.t":
                cols.row_time_is(str(value))
            elif prefix == "data.item.values.item":
                cols.value(value if isinstance(value, str) else float(value))
            elif prefix == "meta.legend.item":
                cols.legend_entry(str(value))
            elif prefix in ("meta.start", "meta.step", "meta.end") and event != "map_key":
                setattr(meta, prefix[5:], _int(str(value), prefix[5:]))
    except ijson.JSONError as e:
        raise RrdParseError(f"JSON: {e}") from None
    return meta


class _ChunkReader:
    """A file-like view that enforces the document size limit."""

    def __init__(self, stream: BinaryIO):
        self._chunks = _chunks(stream)

    def read(self, n: int = -1) -> bytes:
        if n == 0:  # ijson probes the stream's type this way
            return b""
        return next(self._chunks, b"")
