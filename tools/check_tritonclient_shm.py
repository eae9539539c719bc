#!/usr/bin/python3
# A check by hand (not part of the suite: tritonclient is not a Debian
# package): Triton's own Python client, unchanged, against hgpipe-server's
# system shared memory over gRPC and HTTP; input and output in shared
# memory, the answer compared with the bytes path's (docs/serving.md).
#
#   hgpipe-server --allow-client-shm=true ...   (with the verify model)
#   tools/check_tritonclient_shm.py TRITONCLIENT_DIR GRPC_HOST:PORT HTTP_HOST:PORT
#
# TRITONCLIENT_DIR holds the tritonclient package (from
# triton-inference-server/client, with its generated gRPC stubs); it needs
# Debian's python3-numpy, python3-grpcio, python3-protobuf,
# python3-rapidjson and python3-geventhttpclient.
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm

grpc_url, http_url = sys.argv[2], sys.argv[3]
rng = np.random.default_rng(7)
images = rng.integers(-128, 128, (2, 196, 768), dtype=np.int8)
ok = 0
for proto, mod, url in (("grpc", grpcclient, grpc_url), ("http", httpclient, http_url)):
    c = mod.InferenceServerClient(url)
    assert "system_shared_memory" in (c.get_server_metadata()["extensions"] if proto == "http"
                                      else c.get_server_metadata().extensions), proto
    h_in = shm.create_shared_memory_region("in_" + proto, "/tc_in_" + proto, images.nbytes)
    h_out = shm.create_shared_memory_region("out_" + proto, "/tc_out_" + proto, 2 * 4000)
    shm.set_shared_memory_region(h_in, [images])
    c.unregister_system_shared_memory()
    c.register_system_shared_memory("in_" + proto, "/tc_in_" + proto, images.nbytes)
    c.register_system_shared_memory("out_" + proto, "/tc_out_" + proto, 2 * 4000)
    status = c.get_system_shared_memory_status()
    print(proto, "status:", status if proto == "http" else dict(status.regions))
    i = mod.InferInput("INPUT", [2, 196, 768], "INT8")
    i.set_shared_memory("in_" + proto, images.nbytes)
    o = mod.InferRequestedOutput("OUTPUT")
    o.set_shared_memory("out_" + proto, 2 * 4000)
    r = c.infer("verify", [i], outputs=[o])
    out = r.get_output("OUTPUT")
    print(proto, "output listed:", out if proto == "http" else (out.name, out.datatype, list(out.shape)))
    from_shm = shm.get_contents_as_numpy(h_out, np.int32, [2, 1000])
    ib = mod.InferInput("INPUT", [2, 196, 768], "INT8")
    ib.set_data_from_numpy(images)
    from_bytes = c.infer("verify", [ib]).as_numpy("OUTPUT")
    assert np.array_equal(from_shm, from_bytes), proto
    print(proto, "shared memory answer == bytes answer:", from_shm[:, :4].tolist())
    ok += 1
    # Errors as Triton's clients see them.
    for bad in ("nope",):
        ib2 = mod.InferInput("INPUT", [1, 196, 768], "INT8")
        ib2.set_shared_memory(bad, 150528)
        try:
            c.infer("verify", [ib2])
            raise SystemExit("expected an error")
        except Exception as e:
            print(proto, "unknown region ->", str(e)[:160])
    c.unregister_system_shared_memory("in_" + proto)
    c.unregister_system_shared_memory()
    print(proto, "after unregister:", c.get_system_shared_memory_status() if proto == "http"
          else dict(c.get_system_shared_memory_status().regions))
    shm.destroy_shared_memory_region(h_in)
    shm.destroy_shared_memory_region(h_out)
print("ALL OK", ok)
