#!/usr/bin/python3
"""Chaos clients against a running hgpipe-server (bench/chaos.sh starts it).

Nine client threads at once, each doing what a careless or unlucky user
does: calls with deadlines of a millisecond, truncated and empty images,
streams cancelled or timed out between their requests and answers, models
loaded and unloaded (also ones that do not exist) while in use, and
shared-memory regions registered, shrunk under a request and unregistered.
Nothing is checked against a digest (bench/soak.sh does that): the server
must answer every call with a status a client can act on, stay up, keep
its memory bounded, and serve a normal request at the end.

    [CHAOS_SEED=1] [CHAOS_CLIENTS=unary,stream,repository,shm] \
      chaos.py HOST:PORT SECONDS SERVER_PID PROTO_PY_DIR

PROTO_PY_DIR holds proto/grpc_service_pb2.py (protoc --python_out).
Prints the status counts, then one line "chaos: PASS" or "chaos: FAIL ...".
Exit status 0 on PASS.
"""
import io
import os
import random
import sys
import threading
import time

import grpc
from PIL import Image

ADDR, SECS, PID, PROTO = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
sys.path.insert(0, PROTO)
from proto import grpc_service_pb2 as pb  # noqa: E402

SVC = "/inference.GRPCInferenceService/"
channel = grpc.insecure_channel(ADDR, options=[("grpc.max_receive_message_length", 64 << 20),
                                               ("grpc.max_send_message_length", 64 << 20)])


def unary(name, req, resp):
    return channel.unary_unary(SVC + name, request_serializer=req.SerializeToString,
                               response_deserializer=resp.FromString)


infer = unary("ModelInfer", pb.ModelInferRequest, pb.ModelInferResponse)
stream = channel.stream_stream(SVC + "ModelStreamInfer",
                               request_serializer=pb.ModelInferRequest.SerializeToString,
                               response_deserializer=pb.ModelStreamInferResponse.FromString)
load = unary("RepositoryModelLoad", pb.RepositoryModelLoadRequest, pb.RepositoryModelLoadResponse)
unload = unary("RepositoryModelUnload", pb.RepositoryModelUnloadRequest,
               pb.RepositoryModelUnloadResponse)
register = unary("SystemSharedMemoryRegister", pb.SystemSharedMemoryRegisterRequest,
                 pb.SystemSharedMemoryRegisterResponse)
unregister = unary("SystemSharedMemoryUnregister", pb.SystemSharedMemoryUnregisterRequest,
                   pb.SystemSharedMemoryUnregisterResponse)
live = unary("ServerLive", pb.ServerLiveRequest, pb.ServerLiveResponse)

rng = random.Random(int(os.environ.get("CHAOS_SEED", "1")))
PATCHES = bytes(rng.getrandbits(8) for _ in range(196 * 768))
_buf = io.BytesIO()
Image.new("RGB", (64, 48), (120, 30, 200)).save(_buf, "JPEG")
JPEG = _buf.getvalue()
_buf = io.BytesIO()
Image.new("L", (28, 28), 99).save(_buf, "PNG")
PNG = _buf.getvalue()

# Statuses a client can act on. Anything else (INTERNAL, UNKNOWN, a broken
# connection's UNAVAILABLE with no server left) fails the run.
EXPECTED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.NOT_FOUND, grpc.StatusCode.CANCELLED,
            grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION}
stop_at = time.time() + SECS
counts, unexpected = {}, []
lock = threading.Lock()


def note(tag, code, details=""):
    with lock:
        counts[f"{tag}:{code.name}"] = counts.get(f"{tag}:{code.name}", 0) + 1
        if code not in EXPECTED:
            unexpected.append(f"{tag}: {code.name}: {details[:200]}")


def call(fn, req, timeout, tag):
    try:
        fn(req, timeout=timeout)
        note(tag, grpc.StatusCode.OK)
    except grpc.RpcError as e:
        note(tag, e.code(), e.details() or "")


def verify_request(r, n=1, truncate=False):
    req = pb.ModelInferRequest(model_name="verify", id=str(r.random()))
    t = req.inputs.add(name="INPUT", datatype="INT8", shape=[n, 196, 768])
    data = PATCHES * n
    req.raw_input_contents.append(data[:r.randrange(len(data))] if truncate else data)
    return req


def image_request(r, model, blobs):
    req = pb.ModelInferRequest(model_name=model)
    req.inputs.add(name="IMAGE", datatype="BYTES", shape=[len(blobs), 1])
    req.raw_input_contents.append(b"".join(len(b).to_bytes(4, "little") + b for b in blobs))
    if r.random() < 0.3:
        req.parameters["classification"].int64_param = r.choice([0, 1, 5, 1000, -1])
    if r.random() < 0.3:
        req.parameters["priority"].int64_param = r.choice([0, 1, 2, 99])
    if r.random() < 0.3:
        req.parameters["timeout"].int64_param = r.choice([1, 100, 1000, 10**6])
    return req


def unary_client(seed):
    r = random.Random(seed)
    while time.time() < stop_at:
        k = r.random()
        if k < 0.4:
            call(infer, verify_request(r, r.choice([1, 1, 2, 7]), r.random() < 0.1),
                 r.choice([0.001, 0.01, 5]), "verify")
        elif k < 0.7:
            blobs = [r.choice([JPEG, JPEG[:r.randrange(len(JPEG))], b"", PNG])
                     for _ in range(r.randint(1, 4))]
            call(infer, image_request(r, r.choice(["deit_tiny", "fmnist_vit"]), blobs),
                 r.choice([0.002, 0.05, 10]), "image")
        else:
            call(infer, image_request(r, "fmnist_vit", [PNG] * r.randint(1, 40)), 10, "fmnist")


def stream_client(seed):
    r = random.Random(seed)
    while time.time() < stop_at:
        n = r.randint(1, 30)

        def requests():
            for _ in range(n):
                yield (verify_request(r) if r.random() < 0.7
                       else image_request(r, "fmnist_vit", [PNG]))
                if r.random() < 0.2:
                    time.sleep(0.001)
        answers = stream(requests(), timeout=r.choice([0.005, 0.05, 10]))
        try:
            for _ in answers:
                if r.random() < 0.05:
                    answers.cancel()
                    break
            note("stream", grpc.StatusCode.OK)
        except grpc.RpcError as e:
            note("stream", e.code(), e.details() or "")


def repository_client(seed):
    r = random.Random(seed)
    while time.time() < stop_at:
        model = r.choice(["verify", "fmnist_vit", "nosuch", "../etc"])
        if r.random() < 0.5:
            call(load, pb.RepositoryModelLoadRequest(model_name=model), 30, "load")
        else:
            call(unload, pb.RepositoryModelUnloadRequest(model_name=model), 30, "unload")
        time.sleep(r.random() * 0.2)


def shared_memory_client(seed):
    r = random.Random(seed)
    size = 196 * 768 + 4000
    i = 0
    while time.time() < stop_at:
        i += 1
        key = f"/hgpipe-chaos-{os.getpid()}-{i % 3}"
        name = f"chaos{i % 3}"
        with open("/dev/shm" + key, "wb") as f:
            f.write(PATCHES + bytes(4000))
        call(register, pb.SystemSharedMemoryRegisterRequest(name=name, key=key, offset=0,
                                                            byte_size=size), 5, "register")
        for _ in range(r.randint(1, 5)):
            req = pb.ModelInferRequest(model_name="verify")
            t = req.inputs.add(name="INPUT", datatype="INT8", shape=[1, 196, 768])
            t.parameters["shared_memory_region"].string_param = name
            t.parameters["shared_memory_byte_size"].int64_param = 196 * 768
            t.parameters["shared_memory_offset"].int64_param = r.choice([0, 0, 0, 100, size])
            o = req.outputs.add(name="OUTPUT")
            o.parameters["shared_memory_region"].string_param = name
            o.parameters["shared_memory_byte_size"].int64_param = 4000
            o.parameters["shared_memory_offset"].int64_param = 196 * 768
            th = threading.Thread(target=call, args=(infer, req, 5, "shm-infer"))
            th.start()
            if r.random() < 0.3:  # the region shrinks under the request
                os.truncate("/dev/shm" + key, r.choice([0, 100, size // 2]))
            th.join()
        call(unregister, pb.SystemSharedMemoryUnregisterRequest(
            name=name if r.random() < 0.8 else ""), 5, "unregister")
        try:
            os.unlink("/dev/shm" + key)
        except OSError:
            pass


def rss_kib():
    try:
        with open(f"/proc/{PID}/status") as f:
            for line in f:
                if line.startswith("VmRSS"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# CHAOS_CLIENTS picks kinds (default all): to tell which one a leak or a
# crash needs.
kinds = {"unary": [unary_client] * 4, "stream": [stream_client] * 3,
         "repository": [repository_client], "shm": [shared_memory_client]}
chosen = os.environ.get("CHAOS_CLIENTS", ",".join(kinds)).split(",")
workers = [w for k in chosen for w in kinds[k]]
threads = [threading.Thread(target=w, args=(i,)) for i, w in enumerate(workers)]
for t in threads:
    t.start()
rss = []
while time.time() < stop_at:
    time.sleep(min(10, max(0.1, stop_at - time.time())))
    rss.append(rss_kib())
    print(f"chaos: t={SECS - max(0, stop_at - time.time()):.0f}s rss={rss[-1]} KiB", flush=True)
for t in threads:
    t.join()

failures = []
# Whatever the repository client left, verify is loaded again and serves.
try:
    load(pb.RepositoryModelLoadRequest(model_name="verify"), timeout=60)
    infer(verify_request(random.Random(0)), timeout=30)
    live(pb.ServerLiveRequest(), timeout=5)
except grpc.RpcError as e:
    failures.append(f"the server does not serve after the chaos: {e.code().name}: {e.details()}")
if unexpected:
    failures.append(f"{len(unexpected)} unexpected statuses, first: {unexpected[0]}")
if 0 in rss:
    failures.append("the server process went away")
# Memory bounded: the second half's highest RSS within 25 % of the first
# half's (a leak of a request's worth per call grows far faster).
half = len(rss) // 2
if half >= 2 and 0 not in rss and max(rss[half:]) > 1.25 * max(rss[:half]):
    failures.append(f"RSS grew: first half max {max(rss[:half])} KiB, "
                    f"second half max {max(rss[half:])} KiB")
for k in sorted(counts):
    print(f"chaos: {k} {counts[k]}")
print("chaos: PASS" if not failures else "chaos: FAIL " + "; ".join(failures))
sys.exit(0 if not failures else 1)
