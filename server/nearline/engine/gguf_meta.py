"""A GGUF file's key/value metadata, read without native code and without the tensors.

``gguf.GGUFReader`` builds a numpy view per array element (seconds for a large vocabulary), so
the key/value section is walked directly here, with the ``gguf`` package's format constants.
One walk serves the prompt-format detection (``formats``) and the tokenizer (``tokens``); each
says which keys it keeps, and the values of the others are stepped over without being decoded.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable
from typing import Any


class GGUFError(Exception):
    """The file is not a GGUF this walk reads, or its metadata is cut short or malformed (one
    line that names the file)."""


def read_metadata(path: str | os.PathLike[str], keep: Callable[[str], bool]) -> dict[str, Any]:
    """The metadata values whose keys ``keep`` accepts: scalars as Python numbers and bools,
    strings as ``str`` (undecodable bytes replaced), arrays as lists."""
    from gguf.constants import GGUF_MAGIC, GGUFValueType

    scalar = {
        GGUFValueType.UINT8: "B", GGUFValueType.INT8: "b", GGUFValueType.UINT16: "H",
        GGUFValueType.INT16: "h", GGUFValueType.UINT32: "I", GGUFValueType.INT32: "i",
        GGUFValueType.FLOAT32: "f", GGUFValueType.BOOL: "?", GGUFValueType.UINT64: "Q",
        GGUFValueType.INT64: "q", GGUFValueType.FLOAT64: "d",
    }  # fmt: skip
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if len(buf) < 24 or struct.unpack_from("<I", buf, 0)[0] != GGUF_MAGIC:
                raise GGUFError(f"{path} is not a GGUF file")
            order = "<"
            version = struct.unpack_from("<I", buf, 4)[0]
            if version & 0xFFFF == 0:  # written on a big-endian host
                order = ">"
                version = struct.unpack_from(">I", buf, 4)[0]
            if version < 2:  # version 1's lengths are 32-bit: this walk would misread them
                raise GGUFError(f"{path}: GGUF version {version} is not supported")
            u32 = struct.Struct(order + "I").unpack_from
            u64 = struct.Struct(order + "Q").unpack_from

            def read_str(off: int) -> tuple[str, int]:
                n = u64(buf, off)[0]
                off += 8
                return buf[off : off + n].decode("utf-8", errors="replace"), off + n

            def read_value(vtype: int, off: int, keep: bool) -> tuple[Any, int]:
                if vtype == GGUFValueType.STRING:
                    if keep:
                        return read_str(off)
                    return None, off + 8 + u64(buf, off)[0]
                if vtype == GGUFValueType.ARRAY:
                    etype, count = u32(buf, off)[0], u64(buf, off + 4)[0]
                    off += 12
                    if etype == GGUFValueType.STRING:
                        if not keep:  # a vocabulary or merges: step over without decoding
                            for _ in range(count):
                                off += 8 + u64(buf, off)[0]
                            return None, off
                        strings: list[str] = []
                        for _ in range(count):
                            s, off = read_str(off)
                            strings.append(s)
                        return strings, off
                    if etype in scalar:
                        fmt = order + f"{count}{scalar[GGUFValueType(etype)]}"
                        vals = list(struct.unpack_from(fmt, buf, off)) if keep else None
                        return vals, off + struct.calcsize(fmt)
                    items = []  # nested arrays
                    for _ in range(count):
                        v, off = read_value(etype, off, keep)
                        items.append(v)
                    return (items if keep else None), off
                fmt = order + scalar[GGUFValueType(vtype)]
                return struct.unpack_from(fmt, buf, off)[0], off + struct.calcsize(fmt)

            meta: dict[str, Any] = {}
            off = 24
            for _ in range(u64(buf, 16)[0]):
                key, off = read_str(off)
                vtype = u32(buf, off)[0]
                wanted = keep(key)
                value, off = read_value(vtype, off + 4, wanted)
                if wanted:
                    meta[key] = value
            return meta
    except (OSError, ValueError, OverflowError, struct.error, IndexError, KeyError) as exc:
        raise GGUFError(f"cannot read the GGUF metadata of {path}: {exc}") from exc
