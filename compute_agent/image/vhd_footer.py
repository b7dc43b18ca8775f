"""A VHD's virtual disk size, read from the first bytes of the stream.

A dynamic or differencing VHD starts with a copy of its 512-byte footer
(cookie ``conectix``); the disk's size is the big-endian ``current_size``
at offset 48. A fixed VHD is the raw disk followed by the footer, so its
virtual size is the file's size less 512 (VHD specification, "Hard Disk
Footer Format"). The size is needed before the import: the VDI must exist,
that big, before xapi takes the data.
"""

from __future__ import annotations

import struct

FOOTER_SIZE = 512
COOKIE = b"conectix"
_CURRENT_SIZE = struct.Struct(">Q")
_CURRENT_SIZE_OFFSET = 48
_DISK_TYPE_OFFSET = 60
DISK_TYPES = {2: "fixed", 3: "dynamic", 4: "differencing"}


class NotAVHD(ValueError):
    pass


def virtual_size(head: bytes, file_size: int | None) -> int:
    """The virtual size of the VHD whose first bytes are ``head`` and whose
    length is ``file_size``."""
    if head[:8] == COOKIE and len(head) >= FOOTER_SIZE:
        disk_type = struct.unpack_from(">I", head, _DISK_TYPE_OFFSET)[0]
        if disk_type == 4:
            raise NotAVHD("a differencing VHD needs its parent; upload a standalone disk")
        if disk_type not in DISK_TYPES:
            raise NotAVHD(f"unknown VHD disk type {disk_type}")
        return _CURRENT_SIZE.unpack_from(head, _CURRENT_SIZE_OFFSET)[0]
    # fixed: no copy of the footer at the start
    if file_size is None or file_size < FOOTER_SIZE or file_size % FOOTER_SIZE:
        raise NotAVHD("neither a dynamic VHD header nor the length of a fixed VHD")
    return file_size - FOOTER_SIZE
