#!/usr/bin/python3
"""Checks of the Python side of the datapath (run by ctest as
vit_python_selftest):
  1. hgpipe.py reproduces the committed golden vectors of fmnist_vit, so the
     reference the C++ is tested against and the committed files agree;
  2. the committed weights carry the documented fmnist input convention;
  3. no type of the committed fmnist weights wraps on the golden test
     images (the model against a copy with every wrapping type 56 bits);
  4. convert_deit_checkpoint.py --self-test: the quantizer on a random
     DeiT-tiny-shaped checkpoint (token mapping against timm's forward, the
     integer model against the float one).

  /usr/bin/python3 tools/vit/selftest.py [SOURCE_DIR]
"""

import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import convert_deit_checkpoint  # noqa: E402
import fmnist_data  # noqa: E402
import golden  # noqa: E402
import hgpipe  # noqa: E402
import quantize  # noqa: E402
import weightfile  # noqa: E402


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..")
    model_dir = os.path.join(root, "models", "fmnist_vit")
    net = hgpipe.Model.load(os.path.join(model_dir, "fmnist_vit.hgvit"))
    gm, gt = weightfile.read(os.path.join(model_dir, "golden.hgvit"))
    n = gm["images"]
    flat = hgpipe.from_device_order(gt["input"], net.tokens, net.token_values)
    words = golden.logit_words(net, flat)
    bad = int((words.astype(np.int64) != gt["output"].astype(np.int64)).sum())
    print(f"golden: {n} images, {bad} words differ")
    assert bad == 0, "hgpipe.py no longer reproduces the golden vectors"

    labelled = gt["true_label"] >= 0
    img, _ = fmnist_data.load("t10k")
    assert np.array_equal(flat[labelled],
                          fmnist_data.to_patches(img[:int(labelled.sum())])), \
        "golden inputs do not follow fmnist_data.to_patches"
    assert net.manifest["input_scale"] == fmnist_data.INPUT_SCALE
    assert (net.tokens, net.token_values) == (fmnist_data.TOKENS,
                                              fmnist_data.TOKEN_VALUES)
    print("fmnist input convention: ok")

    wraps = quantize.check_no_wraps(net.manifest, net.t, flat[labelled])
    print(f"golden test images where a type wraps: {wraps}")
    assert wraps == 0, "a type of fmnist_vit wraps on a test image"

    with tempfile.TemporaryDirectory() as d:
        convert_deit_checkpoint.self_test(os.path.join(d, "deit.hgvit"))
    print("vit selftest: ok")


if __name__ == "__main__":
    main()
