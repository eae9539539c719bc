#!/usr/bin/python3
"""Writes a gRPC-framed KServe v2 ModelInferRequest for h2load's -d.

    infer_body.py FILE OUT [MODEL] [TIMEOUT_US]

FILE goes as one BYTES element of input IMAGE (raw_input_contents: a 4-byte
little-endian length, then the bytes) to MODEL (default deit_tiny); a
TIMEOUT_US above 0 is sent as the request parameter `timeout`. Written in
protobuf's wire format by hand so that nothing beyond python3 is needed.
"""
import struct
import sys


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def field(num, payload):  # length-delimited
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def main():
    data = open(sys.argv[1], "rb").read()
    model = sys.argv[3].encode() if len(sys.argv) > 3 else b"deit_tiny"
    timeout_us = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    shape = varint(1) + varint(1)
    tensor = field(1, b"IMAGE") + field(2, b"BYTES") + field(3, shape)
    msg = field(1, model)
    if timeout_us > 0:
        param = varint(2 << 3) + varint(timeout_us)  # InferParameter.int64_param
        msg += field(4, field(1, b"timeout") + field(2, param))  # parameters map entry
    msg += field(5, tensor) + field(7, struct.pack("<I", len(data)) + data)
    with open(sys.argv[2], "wb") as out:
        out.write(b"\0" + struct.pack(">I", len(msg)) + msg)


if __name__ == "__main__":
    main()
