#!/usr/bin/python3
"""Checks of the Python side of the datapath (run by ctest as
vit_python_selftest):
  1. intref.py reproduces the committed golden vectors of fmnist_vit, so the
     reference the C++ is tested against has not drifted;
  2. the committed weights carry the documented fmnist input convention;
  3. convert_deit_checkpoint.py --self-test (random DeiT-tiny-shaped
     checkpoint: token mapping against timm's forward, W8A8 and W3A3 export).

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
import intref  # noqa: E402
import weightfile  # noqa: E402


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..")
    model_dir = os.path.join(root, "models", "fmnist_vit")
    manifest, tensors = weightfile.read(os.path.join(model_dir,
                                                     "fmnist_vit.hgvit"))
    gm, gt = weightfile.read(os.path.join(model_dir, "golden.hgvit"))
    n = gm["images"]
    t, v = manifest["tokens"], manifest["token_values"]
    dev = gt["input"].reshape(n, t // 2, v // 2, 2, 2)
    flat = dev.transpose(0, 1, 3, 2, 4).reshape(n, t, v)
    words = intref.encode_logit_words(
        intref.IntVit(manifest, tensors).forward(flat))
    bad = int((words.astype(np.int64) != gt["output"].astype(np.int64)).sum())
    print(f"golden: {n} images, {bad} words differ")
    assert bad == 0, "intref.py no longer reproduces the golden vectors"

    labelled = gt["true_label"] >= 0
    img, _ = fmnist_data.load("t10k")
    assert np.array_equal(flat[labelled],
                          fmnist_data.to_patches(img[:int(labelled.sum())])), \
        "golden inputs do not follow fmnist_data.to_patches"
    assert manifest["input_scale"] == fmnist_data.INPUT_SCALE
    assert (t, v) == (fmnist_data.TOKENS, fmnist_data.TOKEN_VALUES)
    print("fmnist input convention: ok")

    with tempfile.TemporaryDirectory() as d:
        convert_deit_checkpoint.self_test(os.path.join(d, "deit.hgvit"))
    print("vit selftest: ok")


if __name__ == "__main__":
    main()
