"""Reads and writes the HG-PIPE weight container (docs/datapath.md, "Weight
file"), the file accel/vit/weight_file.cc loads. Weight files and golden
vector files both use it.

Layout (little-endian), optionally gzip-compressed as a whole:
  magic    8 bytes  b"HGPVIT\\r\\n"
  version  u32      2
  manifest u32 length + that many bytes of ASCII "key value" lines
  count    u32      number of tensors
  tensor   u16 name length, name (ASCII), u8 dtype, u8 rank, u32 dims[rank],
           u64 byte length (= product(dims) * dtype size), the data
  crc32    u32      zlib CRC-32 of every byte before it
"""

import gzip
import struct
import zlib

import numpy as np

MAGIC = b"HGPVIT\r\n"
VERSION = 2
DTYPES = {1: np.int8, 2: np.uint8, 3: np.int16, 4: np.int32, 5: np.int64}
CODES = {np.dtype(v): k for k, v in DTYPES.items()}


def serialize(manifest, tensors):
    """manifest: dict key -> value (str() of each value is written; keys and
    values must not hold newlines); tensors: dict name -> ndarray (int8,
    uint8, int16, int32 or int64), in insertion order."""
    out = bytearray(MAGIC)
    out += struct.pack("<I", VERSION)
    lines = []
    for k, v in manifest.items():
        v = str(v)
        if " " in k or "\n" in k or "\n" in v or not k:
            raise ValueError(f"manifest key {k!r}: bad key or value")
        lines.append(f"{k} {v}\n")
    text = "".join(lines).encode("ascii")
    out += struct.pack("<I", len(text)) + text
    out += struct.pack("<I", len(tensors))
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        if arr.dtype not in CODES:
            raise ValueError(f"tensor {name}: unsupported dtype {arr.dtype}")
        nb = name.encode("ascii")
        out += struct.pack("<H", len(nb)) + nb
        out += struct.pack("<BB", CODES[arr.dtype], arr.ndim)
        out += struct.pack(f"<{arr.ndim}I", *arr.shape)
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        out += struct.pack("<Q", len(data)) + data
    out += struct.pack("<I", zlib.crc32(bytes(out)) & 0xFFFFFFFF)
    return bytes(out)


def write(path, manifest, tensors, compress=False):
    """Writes serialize(manifest, tensors) to `path`, gzip-compressed (with a
    fixed timestamp, so the same content gives the same file) if
    `compress`."""
    data = serialize(manifest, tensors)
    if compress:
        data = gzip.compress(data, compresslevel=9, mtime=0)
    with open(path, "wb") as f:
        f.write(data)


def _parse_value(v):
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def parse(data, source="<bytes>"):
    """Returns (manifest dict, tensors dict) of a container image (gzip or
    not). Raises ValueError on a malformed one."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 20 or data[:8] != MAGIC:
        raise ValueError(f"{source}: not an HG-PIPE weight container")
    if zlib.crc32(data[:-4]) & 0xFFFFFFFF != struct.unpack("<I", data[-4:])[0]:
        raise ValueError(f"{source}: CRC mismatch")
    pos = 8
    (version,) = struct.unpack_from("<I", data, pos)
    pos += 4
    if version != VERSION:
        raise ValueError(f"{source}: version {version}, expected {VERSION}")
    (mlen,) = struct.unpack_from("<I", data, pos)
    pos += 4
    manifest = {}
    for line in data[pos:pos + mlen].decode("ascii").splitlines():
        if line.strip():
            k, v = line.split(" ", 1)
            manifest[k] = _parse_value(v)
    pos += mlen
    (count,) = struct.unpack_from("<I", data, pos)
    pos += 4
    tensors = {}
    for _ in range(count):
        (nlen,) = struct.unpack_from("<H", data, pos)
        pos += 2
        name = data[pos:pos + nlen].decode("ascii")
        pos += nlen
        code, rank = struct.unpack_from("<BB", data, pos)
        pos += 2
        dims = struct.unpack_from(f"<{rank}I", data, pos)
        pos += 4 * rank
        (nbytes,) = struct.unpack_from("<Q", data, pos)
        pos += 8
        dt = np.dtype(DTYPES[code]).newbyteorder("<")
        tensors[name] = np.frombuffer(data, dtype=dt, count=nbytes // dt.itemsize,
                                      offset=pos).reshape(dims).astype(
                                          DTYPES[code])
        pos += nbytes
    return manifest, tensors


def read(path):
    """Returns (manifest dict, tensors dict) of the file at `path`."""
    with open(path, "rb") as f:
        return parse(f.read(), path)
