"""Reads and writes the HG-PIPE ViT weight container (docs/datapath.md,
"Weight file"), the file accel/vit/weight_file.cc loads.

Layout (little-endian):
  magic    8 bytes  b"HGPVIT\\r\\n"
  version  u32      1
  manifest u32 length + that many bytes of ASCII "key value" lines
  count    u32      number of tensors
  tensor   u16 name length, name (ASCII), u8 dtype, u8 rank, u32 dims[rank],
           u64 byte length (= product(dims) * dtype size), the data
  crc32    u32      zlib CRC-32 of every byte before it
"""

import struct
import zlib

import numpy as np

MAGIC = b"HGPVIT\r\n"
VERSION = 1
DTYPES = {1: np.int8, 2: np.uint8, 3: np.int16, 4: np.int32, 5: np.int64}
CODES = {np.dtype(v): k for k, v in DTYPES.items()}

# Manifest keys in the order they are written; all are required.
MANIFEST_KEYS = [
    "name", "tokens", "token_values", "width", "heads", "depth",
    "mlp_hidden", "classes", "residual_bits", "patch_weight_bits",
    "block_weight_bits", "head_weight_bits", "act_bits", "head_act_bits",
    "prob_bits", "gelu_in_bits", "rsqrt_index_bits", "rsqrt_frac_bits",
    "input_scale", "logit_scale", "clock_hz", "interval_cycles",
    "latency_cycles",
]


def write(path, manifest, tensors):
    """manifest: dict with MANIFEST_KEYS; tensors: dict name -> ndarray
    (int8, uint8, int16, int32 or int64), written in insertion order."""
    out = bytearray(MAGIC)
    out += struct.pack("<I", VERSION)
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise ValueError(f"manifest lacks {missing}")
    text = "".join(f"{k} {manifest[k]}\n" for k in MANIFEST_KEYS)
    text = text.encode("ascii")
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
    with open(path, "wb") as f:
        f.write(out)


def _parse_value(v):
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def read(path):
    """Returns (manifest dict, tensors dict). Raises ValueError on a
    malformed file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 20 or data[:8] != MAGIC:
        raise ValueError(f"{path}: not an HG-PIPE ViT weight file")
    if zlib.crc32(data[:-4]) & 0xFFFFFFFF != struct.unpack("<I", data[-4:])[0]:
        raise ValueError(f"{path}: CRC mismatch")
    pos = 8
    (version,) = struct.unpack_from("<I", data, pos)
    pos += 4
    if version != VERSION:
        raise ValueError(f"{path}: version {version}, expected {VERSION}")
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
