#!/usr/bin/env python3
"""Writes tests/data/datasets: a tiny dataset in each layout `--data` reads, made of flat
colour patches (not real data), for the readers' tests.

    python3 -m pip install numpy pillow && python3 scripts/make-data-fixtures.py

Layouts (docs/method.md#your-own-data):
- plain/:       obs/, a/, b/, a+b/ with PNG and JPEG files in nested folders
- quad_causal/: the paper's image folders, train_<ctx>/images_64/*.png and holdout_<ctx>/...,
                each beside its <ctx>.csv of latents; composed pairs joined by _
- 3dident/:     the 3DIdent download, 3DIdent_Concepts/<label>/images and
                3DIdent_Concepts_ood/dataset/<pair>/images (pairs joined by -)
- quad_npz/:    the paper's npz archives, obs1/ and ivn_<ctx>/dataset.npz, holdout/<ctx>_holdout/
- mnist_csv/:   normalized_mnist_<ctx>.csv and holdout_normalized_mnist_<ctx>.csv, 784 values in
                [0, 1] then two extra columns per row
"""

import os
import shutil

import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "datasets")
rng = np.random.default_rng(131223)


def patch(side, channels, seed):
    """A flat background with a brighter square whose place depends on the seed."""
    g = np.random.default_rng(seed)
    image = np.full((side, side, channels), g.integers(0, 120), dtype=np.uint8)
    x, y = g.integers(0, side // 2, size=2)
    image[y : y + side // 2, x : x + side // 2] = g.integers(150, 256, size=channels)
    return image


def save(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = "L" if array.shape[2] == 1 else "RGB"
    Image.fromarray(array.squeeze(2) if mode == "L" else array, mode).save(path)


def plain():
    base = os.path.join(ROOT, "plain")
    for i, context in enumerate(["obs", "a", "b", "a+b"]):
        for k in range(4):
            sub = "nested" if k % 2 else ""
            ext = "jpg" if k == 3 else "png"
            save(os.path.join(base, context, sub, f"{k}.{ext}"), patch(16, 3, 10 * i + k))


def quad_causal():
    base = os.path.join(ROOT, "quad_causal")
    singles = ["obs", "quad1", "quad2"]
    for split, contexts in [("train", singles), ("holdout", singles + ["quad1_quad2"])]:
        for i, context in enumerate(contexts):
            folder = os.path.join(base, f"{split}_{context}")
            for k in range(3):
                save(os.path.join(folder, "images_64", f"{k}.png"), patch(64, 3, 100 * i + k))
            with open(os.path.join(folder, f"{context}.csv"), "w") as f:
                f.write("quad1,quad2,quad3,quad4,size,color,shape,orientation\n")
                for _ in range(3):
                    f.write(",".join(f"{v:.6f}" for v in rng.normal(size=8)) + "\n")


def three_d_ident():
    base = os.path.join(ROOT, "3dident")
    for i, label in enumerate(["obs", "bg", "obj"]):
        for k in range(3):
            path = os.path.join(base, "3DIdent_Concepts", label, "images", f"{k:06d}.png")
            save(path, patch(32, 3, 200 + 10 * i + k))
    for k in range(2):
        path = os.path.join(base, "3DIdent_Concepts_ood", "dataset", "bg-obj", "images", f"{k:06d}.png")
        save(path, patch(32, 3, 300 + k))


def quad_npz():
    base = os.path.join(ROOT, "quad_npz")
    folders = [("obs1", 3), ("ivn_quad1", 3), ("ivn_size", 3), ("holdout/quad1_size_holdout", 2)]
    for i, (folder, n) in enumerate(folders):
        images = np.stack([patch(64, 3, 400 + 10 * i + k) for k in range(n)])
        os.makedirs(os.path.join(base, folder), exist_ok=True)
        np.savez(os.path.join(base, folder, "dataset.npz"), images=images, labels=np.arange(n))


def mnist_csv():
    base = os.path.join(ROOT, "mnist_csv")
    os.makedirs(base, exist_ok=True)
    for i, context in enumerate(["obs", "thin", "shear"]):
        for prefix, n in [("", 3), ("holdout_", 2)]:
            rows = []
            for k in range(n):
                pixels = patch(28, 1, 500 + 10 * i + k).reshape(-1) / 255.0
                extra = [k % 10, 0.5]
                rows.append(",".join(f"{v:.4f}" for v in list(pixels) + extra))
            with open(os.path.join(base, f"{prefix}normalized_mnist_{context}.csv"), "w") as f:
                f.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    shutil.rmtree(ROOT, ignore_errors=True)
    plain()
    quad_causal()
    three_d_ident()
    quad_npz()
    mnist_csv()
    print("wrote", os.path.normpath(ROOT))
