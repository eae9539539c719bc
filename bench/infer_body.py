#!/usr/bin/python3
"""Writes a gRPC-framed KServe v2 ModelInferRequest for h2load's -d.

    infer_body.py FILE OUT [MODEL] [TIMEOUT_US]

FILE goes as one BYTES element of input IMAGE (raw_input_contents: a 4-byte
little-endian length, then the bytes) to MODEL (default deit_tiny); a
TIMEOUT_US above 0 is sent as the request parameter `timeout`.
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kserve_wire import frame, ld, param_i64, tensor  # noqa: E402


def main():
    data = open(sys.argv[1], "rb").read()
    model = sys.argv[3] if len(sys.argv) > 3 else "deit_tiny"
    timeout_us = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    msg = ld(1, model.encode())
    if timeout_us > 0:
        msg += param_i64("timeout", timeout_us)
    msg += ld(5, tensor("IMAGE", "BYTES", [1, 1])) + ld(7, struct.pack("<I", len(data)) + data)
    with open(sys.argv[2], "wb") as out:
        out.write(frame(msg))


if __name__ == "__main__":
    main()
