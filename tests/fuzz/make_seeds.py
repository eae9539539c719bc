#!/usr/bin/python3
"""Writes the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/):
small, valid or nearly valid inputs the fuzzers mutate from. Run from the
repository root: /usr/bin/python3 tests/fuzz/make_seeds.py (needs protoc and
python3-protobuf, both installed by tools/install-deps.sh)."""

import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

ROOT = os.getcwd()
CORPUS = os.path.join(ROOT, "tests/fuzz/corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def container(manifest, tensors):
    """The weight container (tools/vit/weightfile.py's layout)."""
    out = bytearray(b"HGPVIT\r\n") + struct.pack("<I", 1)
    text = "".join(f"{k} {v}\n" for k, v in manifest).encode()
    out += struct.pack("<I", len(text)) + text + struct.pack("<I", len(tensors))
    for name, dtype, dims, data in tensors:
        nb = name.encode()
        out += struct.pack("<H", len(nb)) + nb + struct.pack("<BB", dtype, len(dims))
        out += struct.pack(f"<{len(dims)}I", *dims) + struct.pack("<Q", len(data)) + data
    return bytes(out + struct.pack("<I", zlib.crc32(bytes(out)) & 0xFFFFFFFF))


def main():
    shutil.rmtree(CORPUS, ignore_errors=True)
    # Weight / golden container.
    golden = container([("model", "tiny"), ("images", 1), ("classes", 2)],
                       [("input", 1, [1, 8], bytes(range(8))),
                        ("output", 4, [1, 2], struct.pack("<2i", 5, -3)),
                        ("true_label", 4, [1], struct.pack("<i", -1))])
    put("weight_file_fuzz", "golden_tiny.hgvit", golden)
    put("weight_file_fuzz", "truncated.hgvit", golden[:40])
    put("weight_file_fuzz", "empty_manifest.hgvit", container([], []))
    # Model configs.
    for m in ("verify", "fmnist_vit", "deit_tiny"):
        with open(os.path.join(ROOT, "models", m, "config.pbtxt"), "rb") as f:
            put("model_config_fuzz", f"{m}.pbtxt", f.read())
    put("model_config_fuzz", "batching.pbtxt",
        b'name: "verify" bitstream: "verify" batching { max_images_per_run: 8 '
        b'priority_levels: 3 default_priority_level: 2 max_queue_images: 100 '
        b'default_timeout_us: 5000 }')
    # Images.
    for name in ("fmnist_t10k_0.png", "photo_64x48.png"):
        with open(os.path.join(ROOT, "tests/preprocess/data", name), "rb") as f:
            put("image_decoder_fuzz", name, f.read())
    # Requests: protoc's Python module for the KServe protocol.
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.check_call(["protoc", "-I", ROOT, f"--python_out={tmp}",
                               "proto/grpc_service.proto", "proto/triton_model_config.proto"])
        sys.path.insert(0, tmp)
        from proto import grpc_service_pb2 as pb
        with open(os.path.join(ROOT, "tests/preprocess/data/fmnist_t10k_0.png"), "rb") as f:
            png = f.read()

        def req(model, name, datatype, shape, **kw):
            r = pb.ModelInferRequest(model_name=model, id="seed")
            t = r.inputs.add(name=name, datatype=datatype, shape=shape)
            if "bytes" in kw:
                t.contents.bytes_contents.extend(kw["bytes"])
            if "ints" in kw:
                t.contents.int_contents.extend(kw["ints"])
            if "raw" in kw:
                r.raw_input_contents.append(kw["raw"])
            for k, v in kw.get("params", {}).items():
                if isinstance(v, bool):
                    r.parameters[k].bool_param = v
                elif v < 0:
                    r.parameters[k].int64_param = v
                else:
                    r.parameters[k].uint64_param = v
            if "output" in kw:
                o = r.outputs.add(name=kw["output"])
                o.parameters["classification"].int64_param = 3
            return r.SerializeToString()

        put("infer_request_fuzz", "png_bytes",
            req("fmnist_vit", "IMAGE", "BYTES", [1], bytes=[png],
                params={"priority": 1, "timeout": 20000}, output="LOGITS"))
        put("infer_request_fuzz", "png_raw",
            req("fmnist_vit", "IMAGE", "BYTES", [1], raw=struct.pack("<I", len(png)) + png))
        put("infer_request_fuzz", "pixels",
            req("fmnist_vit", "IMAGE", "UINT8", [1, 28, 28, 1], raw=bytes(784)))
        put("infer_request_fuzz", "int8_small_shape",
            req("verify", "INPUT", "INT8", [1, 2, 4], ints=list(range(-4, 4))))
        put("infer_request_fuzz", "int8_raw_short",
            req("verify", "INPUT", "INT8", [1, 196, 768], raw=bytes(64),
                params={"timeout": -1, "sequence_id": 7}))

    # REST bodies: 4 bytes of JSON-header length (Inference-Header-Content-
    # Length), the JSON, then any binary tensor data.
    def rest(doc, binary=b""):
        j = doc.encode()
        return struct.pack("<I", len(j)) + j + binary
    put("rest_json_fuzz", "json_pixels",
        rest('{"id":"seed","parameters":{"priority":1,"timeout":20000},"inputs":[{"name":"IMAGE",'
             '"datatype":"UINT8","shape":[1,28,28,1],"data":[' + ",".join(["0"] * 784) + ']}],'
             '"outputs":[{"name":"LOGITS","parameters":{"classification":3}}]}'))
    put("rest_json_fuzz", "binary_png",
        rest('{"inputs":[{"name":"IMAGE","datatype":"BYTES","shape":[1],"parameters":'
             '{"binary_data_size":%d}}],"parameters":{"binary_data_output":true}}' % (len(png) + 4),
             struct.pack("<I", len(png)) + png))
    put("rest_json_fuzz", "int8_binary_output",
        rest('{"inputs":[{"name":"INPUT","datatype":"INT8","shape":[1,2,4],'
             '"data":[-4,-3,-2,-1,0,1,2,3]}],"outputs":[{"name":"LOGITS",'
             '"parameters":{"binary_data":true}}]}'))
    # Settings bodies (the whole input is also parsed as one).
    put("rest_json_fuzz", "trace_settings",
        b'{"trace_level":["TIMESTAMPS"],"trace_rate":"10","trace_count":null,'
        b'"log_frequency":"2","trace_file":"","trace_mode":"triton"}')
    put("rest_json_fuzz", "log_settings",
        b'{"log_verbose_level":1,"log_info":false,"log_format":"ISO8601","log_file":null}')


if __name__ == "__main__":
    main()
