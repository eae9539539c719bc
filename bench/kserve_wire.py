"""KServe v2 gRPC messages in protobuf's wire format, written by hand so that
the bench scripts need nothing beyond python3 (no generated stubs).

Field numbers are grpc_service.proto's: ModelInferRequest model_name 1,
parameters 4, inputs 5, outputs 6, raw_input_contents 7; InferTensor name 1,
datatype 2, shape 3, parameters 4; InferParameter int64_param 2,
string_param 3.
"""
import struct


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def ld(num, payload):
    """A length-delimited field."""
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def vi(num, value):
    """A varint field."""
    return varint(num << 3) + varint(value)


def param_i64(key, value):
    """A `parameters` map entry (field 4 of the request and of a tensor)."""
    return ld(4, ld(1, key.encode()) + ld(2, vi(2, value)))


def param_str(key, value):
    return ld(4, ld(1, key.encode()) + ld(2, ld(3, value.encode())))


def tensor(name, datatype, shape, params=b""):
    """An InferInputTensor (or, without datatype and shape, an output)."""
    body = ld(1, name.encode())
    if datatype:
        body += ld(2, datatype.encode()) + ld(3, b"".join(varint(d) for d in shape))
    return body + params


def frame(msg):
    """gRPC's length-prefixed message framing: what h2load sends with -d."""
    return b"\0" + struct.pack(">I", len(msg)) + msg
