#!/usr/bin/python3
"""Fashion-MNIST accuracy through a running hgpipe-server, as a user sees it.

Sends the 10,000 test images, each encoded as a PNG file, over KServe v2 gRPC
to the model `fmnist_vit` (requests of --batch images, --concurrency of them
in flight), takes the argmax of the FP32 logits it answers, and reports
top-1 accuracy. With --server BIN it starts that hgpipe-server itself on a
free loopback port and stops it afterwards.

  /usr/bin/python3 tools/vit/eval_fmnist_server.py --server build/bin/hgpipe-server \
      --min-accuracy 0.88 --float-accuracy 0.8815

Exits 1 if accuracy is below --min-accuracy, or more than --max-drop below
--float-accuracy (the float PyTorch model's, docs/datapath.md).

A variant (docs/datapath.md, "Variants"): --weights FILE serves that weight
file as the model (a temporary repository holding models/fmnist_vit's
config with `weights` set to FILE and no `variants`, and --golden as its
canary); --record then writes the measured top-1 into FILE's manifest
(top1_accuracy, accuracy_dataset), which the server's config loader requires
of every variant:

  /usr/bin/python3 tools/vit/eval_fmnist_server.py --server build/bin/hgpipe-server \
      --weights models/fmnist_vit/fmnist_vit-skip1.hgvit \
      --golden models/fmnist_vit/golden-skip1.hgvit --record
Only Debian packages: python3-grpcio, python3-protobuf, python3-numpy,
python3-pil, dataset-fashion-mnist; the message classes are generated from
proto/grpc_service.proto with protoc at start.
"""
import argparse
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import grpc
import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import fmnist_data  # noqa: E402


def load_messages():
    out = tempfile.mkdtemp(prefix="hgpipe-pb-")
    subprocess.run(["protoc", "-I" + SRC, "--python_out=" + out,
                    os.path.join(SRC, "proto", "grpc_service.proto"),
                    os.path.join(SRC, "proto", "triton_model_config.proto"),
                    os.path.join(SRC, "proto", "model_config.proto")], check=True)
    sys.path.insert(0, out)
    from proto import grpc_service_pb2  # noqa: E402
    return grpc_service_pb2


def variant_repository(weights, golden_file, model):
    """A temporary model repository serving `weights` as `model`, with
    models/fmnist_vit's config otherwise."""
    from google.protobuf import text_format
    from proto import model_config_pb2
    cfg = model_config_pb2.ModelConfig()
    with open(os.path.join(SRC, "models", "fmnist_vit", "config.pbtxt")) as f:
        text_format.Parse(f.read(), cfg)
    del cfg.variants[:]
    cfg.name = model
    cfg.weights = os.path.abspath(weights)
    root = tempfile.mkdtemp(prefix="hgpipe-eval-repo-")
    os.makedirs(os.path.join(root, model))
    with open(os.path.join(root, model, "config.pbtxt"), "w") as f:
        f.write(text_format.MessageToString(cfg))
    if golden_file:
        shutil.copy(golden_file, os.path.join(root, model, "golden.hgvit"))
    return root


def record_accuracy(path, top1, dataset):
    """Writes the measured accuracy into a weight file's manifest; the
    weights and tables are unchanged."""
    import weightfile
    manifest, tensors = weightfile.read(path)
    manifest["top1_accuracy"] = f"{top1:.4f}"
    manifest["accuracy_dataset"] = dataset
    weightfile.write(path, manifest, tensors, compress=True)


def start_server(binary, repository=None):
    log = tempfile.NamedTemporaryFile(prefix="hgpipe-eval-", suffix=".log", delete=False)
    args = [binary, "--grpc-port=0", "--http-port=0", "--metrics-port=0",
            "--host=127.0.0.1", "--boards=sim:1"]
    if repository:
        args.append("--model-repository=" + repository)
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        text = open(log.name).read()
        m = re.search(r"ready: grpc=\S+:(\d+)", text)
        if m:
            return proc, "127.0.0.1:" + m.group(1)
        if proc.poll() is not None:
            sys.exit("hgpipe-server exited:\n" + text)
        time.sleep(0.1)
    proc.kill()
    sys.exit("hgpipe-server not ready in time")


def png(image):
    buf = io.BytesIO()
    Image.fromarray(image, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="localhost:8001")
    ap.add_argument("--server", help="start this hgpipe-server binary instead of --url")
    ap.add_argument("--model", default="fmnist_vit")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--limit", type=int, default=10000, help="test images to send")
    ap.add_argument("--min-accuracy", type=float, default=0.0)
    ap.add_argument("--float-accuracy", type=float)
    ap.add_argument("--max-drop", type=float, default=0.01)
    ap.add_argument("--weights", help="serve this weight file as the model (needs --server)")
    ap.add_argument("--golden", help="with --weights: its golden vectors (the board canary)")
    ap.add_argument("--record", action="store_true",
                    help="with --weights: write the measured top-1 into its manifest")
    args = ap.parse_args()
    if (args.weights or args.record) and not args.server:
        ap.error("--weights and --record need --server")
    if args.record and not args.weights:
        ap.error("--record needs --weights")

    pb = load_messages()
    images, labels = fmnist_data.load("t10k")
    images, labels = images[: args.limit], labels[: args.limit]
    files = [png(img) for img in images]

    proc = None
    url = args.url
    if args.server:
        repository = None
        if args.weights:
            repository = variant_repository(args.weights, args.golden, args.model)
        proc, url = start_server(args.server, repository)
    try:
        channel = grpc.insecure_channel(url, options=[
            ("grpc.max_send_message_length", 256 << 20),
            ("grpc.max_receive_message_length", 256 << 20)])
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString)

        def request(lo, hi):
            r = pb.ModelInferRequest(model_name=args.model)
            t = r.inputs.add(name="IMAGE", datatype="BYTES", shape=[hi - lo, 1])
            r.raw_input_contents.append(b"".join(
                struct.pack("<I", len(f)) + f for f in files[lo:hi]))
            return r

        predictions = np.empty(len(files), dtype=np.int64)
        pending = []
        start = time.time()
        for lo in range(0, len(files), args.batch):
            hi = min(lo + args.batch, len(files))
            pending.append((lo, hi, infer.future(request(lo, hi), timeout=300)))
            while len(pending) >= args.concurrency or (hi == len(files) and pending):
                plo, phi, fut = pending.pop(0)
                resp = fut.result()
                out = resp.outputs[0]
                assert out.datatype == "FP32", out.datatype
                logits = np.frombuffer(resp.raw_output_contents[0], dtype="<f4")
                predictions[plo:phi] = logits.reshape(phi - plo, -1).argmax(axis=1)
        seconds = time.time() - start
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)

    accuracy = float((predictions == labels).mean())
    result = {"model": args.model, "images": len(files), "top1": accuracy,
              "seconds": round(seconds, 2), "images_per_second": round(len(files) / seconds, 1)}
    if args.float_accuracy is not None:
        result["float_top1"] = args.float_accuracy
    print(json.dumps(result))
    ok = accuracy >= args.min_accuracy
    if args.float_accuracy is not None:
        ok = ok and accuracy >= args.float_accuracy - args.max_drop
    print("fmnist accuracy through hgpipe-server: %.2f %% (%s)" %
          (100 * accuracy, "OK" if ok else "BELOW THE BAR"))
    if args.record:
        dataset = "Fashion-MNIST test (%s images as PNG through hgpipe-server)" % (
            format(len(files), ","))
        record_accuracy(args.weights, accuracy, dataset)
        print("recorded top1_accuracy %.4f in %s" % (accuracy, args.weights))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
