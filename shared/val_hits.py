"""Which validation images a run got right, kept small: one bit per image, base64.

The worker records them for a run's best and last epoch (jobs.val_hits); the report pairs two
configs' runs image by image to count the validation images' own sampling error in a comparison
(orchestrator/analysis/image_error.py). 50,000 images are 8.3 kB a run. No numpy or torch here:
the report reads them in the CLI.
"""
from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence


def pack(hits: Sequence[bool]) -> str:
    """Bits, the first image in the high bit of the first byte (numpy's packbits order)."""
    out = bytearray((len(hits) + 7) // 8)
    for i, hit in enumerate(hits):
        if hit:
            out[i >> 3] |= 0x80 >> (i & 7)
    return base64.b64encode(bytes(out)).decode("ascii")


def unpack(text: str, images: int) -> list[bool]:
    data = base64.b64decode(text)
    if len(data) != (images + 7) // 8:
        raise ValueError(f"val_hits: {len(data)} bytes hold no {images} images")
    return [bool(data[i >> 3] & (0x80 >> (i & 7))) for i in range(images)]


def set_identity(source: str, ids: Sequence[int], labels: Sequence[int]) -> str:
    """The validation set, in its order: hits of runs with the same identity pair image by image.
    `source`: the decode cache's file name (it digests every file's path, size and modification time)."""
    sha = hashlib.sha256(source.encode())
    sha.update(",".join(map(str, ids)).encode())
    sha.update(b"|" + ",".join(map(str, labels)).encode())
    return sha.hexdigest()[:16]
