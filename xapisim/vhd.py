"""The VHD disk image format (fixed and dynamic), as xapi's import and
export handlers speak it with ``format=vhd``.

Written from the published Virtual Hard Disk Image Format Specification:
all integers are big-endian; a 512-byte footer ("conectix") ends every
file; a dynamic disk starts with a copy of the footer, then a 1024-byte
header ("cxsparse") pointing at the Block Allocation Table (BAT), whose
entries give the sector of each allocated block (a sector bitmap followed
by the block's data). Differencing disks (type 4) are refused.

Everything here streams: at most one block is held in memory.
"""

from __future__ import annotations

import os
import struct
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

SECTOR = 512
FOOTER_SIZE = 512
HEADER_SIZE = 1024
DEFAULT_BLOCK_SIZE = 2 * 1024 * 1024
UNUSED = 0xFFFFFFFF
NO_DATA_OFFSET = 0xFFFFFFFFFFFFFFFF
DISK_FIXED = 2
DISK_DYNAMIC = 3
DISK_DIFFERENCING = 4
VHD_EPOCH = 946684800  # 2000-01-01T00:00:00Z, the format's time origin
# Largest disk a VHD can describe (2040 GiB), as xapi enforces on export.
MAX_VHD_SIZE = 2040 * 1024 * 1024 * 1024

# (creator "tap": what XenServer's blktap tools write; readers then trust
# current size over the CHS geometry.)
# cookie, features, version, data offset, timestamp, creator app, creator
# version, creator OS, original size, current size, geometry (C, H, S),
# disk type, checksum, unique id, saved state; then 427 reserved bytes.
_FOOTER = struct.Struct(">8sIIQI4sI4sQQHBBII16sB")
# cookie, data offset, table offset, header version, max table entries,
# block size, checksum, parent unique id, parent timestamp, reserved;
# then parent name (512), 8 parent locators (24 each), reserved (256).
_HEADER = struct.Struct(">8sQQIIII16sII")
_CHECKSUM_AT_FOOTER = 64
_CHECKSUM_AT_HEADER = 36


class VHDError(ValueError):
    """The data is not a VHD this simulator can import."""


@dataclass
class Footer:
    disk_type: int
    current_size: int
    data_offset: int
    unique_id: bytes


def _checksum(data: bytes, at: int) -> int:
    """One's complement of the byte sum, the checksum field counted as 0."""
    total = sum(data[:at]) + sum(data[at + 4:])
    return (~total) & 0xFFFFFFFF


def geometry(size: int) -> tuple[int, int, int]:
    """Cylinders, heads, sectors per track for ``size`` bytes (the
    specification's CHS algorithm)."""
    total = min(size // SECTOR, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cyl_heads = total // spt
    else:
        spt = 17
        cyl_heads = total // spt
        heads = max((cyl_heads + 1023) // 1024, 4)
        if cyl_heads >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cyl_heads = total // spt
        if cyl_heads >= heads * 1024:
            spt, heads = 63, 16
            cyl_heads = total // spt
    return cyl_heads // heads, heads, spt


def make_footer(size: int, disk_type: int, data_offset: int, unique_id: bytes | None = None,
                timestamp: float | None = None) -> bytes:
    c, h, s = geometry(size)
    stamp = int((time.time() if timestamp is None else timestamp) - VHD_EPOCH) & 0xFFFFFFFF
    raw = _FOOTER.pack(
        b"conectix", 2, 0x00010000, data_offset, stamp, b"tap\0", 0x00010003, b"Wi2k",
        size, size, c, h, s, disk_type, 0, unique_id or uuidlib.uuid4().bytes, 0,
    )
    raw += bytes(FOOTER_SIZE - len(raw))
    return raw[:_CHECKSUM_AT_FOOTER] + struct.pack(">I", _checksum(raw, _CHECKSUM_AT_FOOTER)) + \
        raw[_CHECKSUM_AT_FOOTER + 4:]


def parse_footer(data: bytes) -> Footer:
    if len(data) != FOOTER_SIZE:
        raise VHDError("file too short for a VHD footer")
    (cookie, _features, version, data_offset, _ts, _app, _cver, _os, _orig, current,
     _c, _h, _s, disk_type, checksum, unique_id, _saved) = _FOOTER.unpack_from(data)
    if cookie != b"conectix":
        raise VHDError("no VHD footer (cookie 'conectix' missing)")
    if checksum != _checksum(data, _CHECKSUM_AT_FOOTER):
        raise VHDError("VHD footer checksum mismatch")
    if version >> 16 != 1:
        raise VHDError(f"unsupported VHD version {version:#x}")
    if disk_type == DISK_DIFFERENCING:
        raise VHDError("differencing VHDs are not supported")
    if disk_type not in (DISK_FIXED, DISK_DYNAMIC):
        raise VHDError(f"unknown VHD disk type {disk_type}")
    return Footer(disk_type, current, data_offset, unique_id)


def make_header(table_offset: int, entries: int, block_size: int) -> bytes:
    raw = _HEADER.pack(b"cxsparse", NO_DATA_OFFSET, table_offset, 0x00010000, entries,
                       block_size, 0, bytes(16), 0, 0)
    raw += bytes(HEADER_SIZE - len(raw))
    return raw[:_CHECKSUM_AT_HEADER] + struct.pack(">I", _checksum(raw, _CHECKSUM_AT_HEADER)) + \
        raw[_CHECKSUM_AT_HEADER + 4:]


def _bitmap_size(block_size: int) -> int:
    nbytes = block_size // SECTOR // 8
    return -(-nbytes // SECTOR) * SECTOR


def _round_sector(n: int) -> int:
    return -(-n // SECTOR) * SECTOR


# -- export ----------------------------------------------------------------------


def _read_block(f: BinaryIO | None, index: int, size: int, block_size: int) -> bytes:
    """Block ``index`` of a raw image of ``size`` bytes (zero padded); the
    file may be shorter than ``size`` (the rest reads as zeros) or absent."""
    start = index * block_size
    want = max(0, min(block_size, size - start))
    data = b""
    if f is not None and want:
        f.seek(start)
        data = f.read(want)
    return data + bytes(block_size - len(data))


def _allocated_blocks(f: BinaryIO | None, size: int, block_size: int) -> list[int]:
    """Indices of the blocks holding a non-zero byte, skipping the file's
    holes cheaply where the filesystem reports them."""
    if f is None:
        return []
    entries = -(-size // block_size)
    zero = bytes(block_size)
    fd = f.fileno()
    end = min(size, os.fstat(fd).st_size)
    found = []
    index = 0
    while index < entries and index * block_size < end:
        try:
            data_at = os.lseek(fd, index * block_size, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole remains
            break
        index = max(index, data_at // block_size)
        if index >= entries or index * block_size >= end:
            break
        if _read_block(f, index, size, block_size) != zero:
            found.append(index)
        index += 1
    return found


def dynamic_size(f: BinaryIO | None, size: int, block_size: int = DEFAULT_BLOCK_SIZE) -> int:
    """The byte length of the dynamic VHD ``export_dynamic`` would produce."""
    entries = -(-size // block_size)
    blocks = len(_allocated_blocks(f, size, block_size))
    return (FOOTER_SIZE + HEADER_SIZE + _round_sector(entries * 4)
            + blocks * (_bitmap_size(block_size) + block_size) + FOOTER_SIZE)


def export_dynamic(f: BinaryIO | None, size: int,
                   block_size: int = DEFAULT_BLOCK_SIZE) -> Iterator[bytes]:
    """Yield a dynamic VHD of the raw image in ``f`` (``size`` bytes; None
    for an all-zero disk). Only blocks holding data are stored."""
    entries = -(-size // block_size)
    allocated = _allocated_blocks(f, size, block_size)
    bat_bytes = _round_sector(entries * 4)
    bitmap = b"\xff" * (block_size // SECTOR // 8)
    bitmap += bytes(_bitmap_size(block_size) - len(bitmap))
    table_offset = FOOTER_SIZE + HEADER_SIZE
    offset = table_offset + bat_bytes
    bat = [UNUSED] * entries
    for index in allocated:
        bat[index] = offset // SECTOR
        offset += len(bitmap) + block_size
    footer = make_footer(size, DISK_DYNAMIC, FOOTER_SIZE)
    yield footer
    yield make_header(table_offset, entries, block_size)
    table = struct.pack(f">{entries}I", *bat)
    yield table + b"\xff" * (bat_bytes - len(table))
    for index in allocated:
        yield bitmap
        yield _read_block(f, index, size, block_size)
    yield footer


def fixed_footer(size: int) -> bytes:
    """The footer that makes ``size`` bytes of raw data a fixed VHD."""
    return make_footer(size, DISK_FIXED, NO_DATA_OFFSET)


# -- import ----------------------------------------------------------------------


def probe(f: BinaryIO) -> Footer:
    """Validate the footer at the end of the file in ``f``."""
    f.seek(0, os.SEEK_END)
    length = f.tell()
    if length < FOOTER_SIZE:
        raise VHDError("file too short for a VHD footer")
    f.seek(length - FOOTER_SIZE)
    footer = parse_footer(f.read(FOOTER_SIZE))
    if footer.disk_type == DISK_FIXED and length - FOOTER_SIZE != footer.current_size:
        raise VHDError(
            f"fixed VHD holds {length - FOOTER_SIZE} bytes of data but its footer says "
            f"{footer.current_size}"
        )
    return footer


def _write_if_nonzero(out: BinaryIO, offset: int, data: bytes) -> None:
    """Write ``data`` at ``offset`` unless it is all zeros (the output is a
    fresh sparse file, so skipping keeps it sparse)."""
    if data.count(0) != len(data):
        out.seek(offset)
        out.write(data)


def extract(f: BinaryIO, out: BinaryIO, footer: Footer, chunk: int = 1024 * 1024,
            progress=None) -> None:
    """Write the disk content of the VHD in ``f`` into the raw file ``out``
    (fresh, already sized to at least ``footer.current_size``)."""
    size = footer.current_size
    if footer.disk_type == DISK_FIXED:
        f.seek(0)
        done = 0
        while done < size:
            data = f.read(min(chunk, size - done))
            if not data:
                raise VHDError("fixed VHD ends early")
            _write_if_nonzero(out, done, data)
            done += len(data)
            if progress:
                progress(done / size)
        return
    f.seek(0, os.SEEK_END)
    length = f.tell()
    if footer.data_offset + HEADER_SIZE > length:
        raise VHDError("dynamic VHD header outside the file")
    f.seek(footer.data_offset)
    raw = f.read(HEADER_SIZE)
    (cookie, _dataoff, table_offset, _ver, entries, block_size, checksum, _puid, _pts,
     _res) = _HEADER.unpack_from(raw)
    if cookie != b"cxsparse":
        raise VHDError("no dynamic disk header (cookie 'cxsparse' missing)")
    if checksum != _checksum(raw, _CHECKSUM_AT_HEADER):
        raise VHDError("dynamic disk header checksum mismatch")
    if block_size < SECTOR or block_size % SECTOR or block_size & (block_size - 1):
        raise VHDError(f"bad VHD block size {block_size}")
    if entries * block_size < size:
        raise VHDError("VHD block table too small for the disk size")
    if table_offset + entries * 4 > length:
        raise VHDError("VHD block table outside the file")
    bitmap_size = _bitmap_size(block_size)
    f.seek(table_offset)
    table = f.read(entries * 4)
    bat = struct.unpack(f">{entries}I", table)
    used = [(i, s) for i, s in enumerate(bat) if s != UNUSED]
    for n, (index, sector) in enumerate(used):
        start = sector * SECTOR
        if start + bitmap_size + block_size > length:
            raise VHDError(f"VHD block {index} lies outside the file")
        if index * block_size >= size:
            raise VHDError(f"VHD block {index} lies beyond the disk size")
        f.seek(start)
        bitmap = f.read(bitmap_size)
        data = f.read(block_size)
        base = index * block_size
        limit = min(block_size, size - base)
        full = bitmap[: block_size // SECTOR // 8].count(0xFF) == block_size // SECTOR // 8
        if full:
            _write_if_nonzero(out, base, data[:limit])
        else:
            # only the sectors the bitmap marks hold data; the rest are zeros
            for s in range(min(block_size, limit) // SECTOR):
                if bitmap[s // 8] & (0x80 >> (s % 8)):
                    _write_if_nonzero(out, base + s * SECTOR, data[s * SECTOR:(s + 1) * SECTOR])
        if progress:
            progress((n + 1) / len(used))
