"""The decode cache (built once, reused, rebuilt on change, concurrent builders) and augmentation."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from shared.data import load_or_build, scan, write_synthetic
from shared.data.augment import augment, crop_flip, resized_crop_flip, to_input
from shared.data.cache import decode
from shared.errors import DataError
from tests.shared.data_helpers import write_image

REPO = Path(__file__).resolve().parents[2]


def test_built_once_then_reused_and_rebuilt_when_a_file_changes(tmp_path: Path) -> None:
    write_synthetic(tmp_path / "d", classes=["cat", "dog"], counts={"train": 20}, size=24)
    files = scan(tmp_path / "d" / "train").files
    cache = tmp_path / "cache"
    first, built = load_or_build(files, 16, cache, folder=tmp_path)
    assert built and first.shape == (20, 16, 16, 3) and first.dtype == np.uint8
    [npy] = cache.glob("*.npy")
    inode = npy.stat().st_ino
    again, built = load_or_build(files, 16, cache, folder=tmp_path)
    assert not built and npy.stat().st_ino == inode and np.array_equal(first, again)  # the same file, read
    _, built = load_or_build(files, 20, cache, folder=tmp_path)  # another image size: its own cache
    assert built
    write_image(files[3], size=(24, 24), seed=9)  # a changed file (size and mtime): a new cache
    changed, built = load_or_build(files, 16, cache, folder=tmp_path)
    assert built and not np.array_equal(changed[3], first[3]) and np.array_equal(changed[4], first[4])
    assert not list(cache.glob(".*.tmp"))


def test_every_chunk_lands_at_its_images_rows_of_a_plain_npy_file(tmp_path: Path) -> None:
    """The builders write their chunks into the file at offsets of their own: across chunk
    boundaries and a short last chunk, row i is file i decoded, and the file is an ordinary .npy."""
    from shared.data.cache import CHUNK

    n = 2 * CHUNK + 5
    write_synthetic(tmp_path / "d", classes=["cat", "dog"], counts={"train": n}, size=12)
    files = scan(tmp_path / "d" / "train").files
    arr, built = load_or_build(files, 10, tmp_path / "cache", folder=tmp_path)
    assert built and arr.shape == (n, 10, 10, 3)
    for i in (0, CHUNK - 1, CHUNK, 2 * CHUNK, n - 1):
        assert np.array_equal(arr[i], decode(files[i], 10)), i
    [npy] = (tmp_path / "cache").glob("*.npy")
    assert np.array_equal(np.load(npy), np.stack([decode(f, 10) for f in files]))


def test_a_full_disk_is_an_error_to_retry_and_leaves_no_half_written_cache(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A file write that fails (ENOSPC) raises OSError (DiskFull, which fails the job); a write through a memory
    mapping would have killed the process with SIGBUS instead. Nothing half-written is left behind."""
    import errno
    import os

    write_synthetic(tmp_path / "d", classes=["cat", "dog"], counts={"train": 10}, size=12)
    files = scan(tmp_path / "d" / "train").files

    def full(path: Path, offset: int, data: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("shared.data.cache.write_at", full)
    with pytest.raises(OSError, match="No space left") as raised:
        load_or_build(files, 10, tmp_path / "cache", folder=tmp_path)
    from shared.errors import DiskFull  # one line naming the folder, which fails the job rather than retrying it

    assert isinstance(raised.value, DiskFull) and f"the device of {tmp_path / 'cache'}: free some" in str(raised.value)
    assert not list((tmp_path / "cache").glob("*.npy")) and not list((tmp_path / "cache").glob(".*.tmp"))
    monkeypatch.undo()
    _, built = load_or_build(files, 10, tmp_path / "cache", folder=tmp_path)
    assert built


def test_decode_resizes_the_shorter_side_and_centre_crops(tmp_path: Path) -> None:
    from PIL import Image

    pixels = np.zeros((40, 80, 3), dtype=np.uint8)
    pixels[:, 20:60] = 255  # a white centre band 40 px wide: the centre crop of a 2:1 image
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    out = decode(tmp_path / "wide.png", 20)
    assert out.shape == (20, 20, 3) and out[:, 1:-1].min() >= 250  # the edge columns blend with black
    for mode in ("RGBA", "L"):
        assert decode(write_image(tmp_path / f"{mode}.png", mode=mode), 8).shape == (8, 8, 3)


def test_a_16_bit_grey_png_is_scaled_to_8_bits_not_clipped_white(tmp_path: Path) -> None:
    """PIL's convert("RGB") clips I;16 values at 255: a 16-bit PNG's every pixel above 255 of
    65,535 read pure white, and a job trained on such images without a word."""
    from PIL import Image

    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    Image.fromarray((ramp // 257).astype(np.uint8)).save(tmp_path / "eight.png")  # the same picture in 8 bits
    deep, eight = decode(tmp_path / "deep.png", 32), decode(tmp_path / "eight.png", 32)
    assert (deep.min(), deep.max()) == (0, 255) and np.abs(deep.astype(int) - eight).max() <= 1
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")  # the case, as Pillow reads it
    from shared.data.cache import _as_rgb  # mode I (older Pillows' 16-bit PNG), in memory: Pillow 13 writes none

    as_read = {value: np.asarray(_as_rgb(Image.fromarray(np.full((4, 4), value, dtype=np.int32), "I"))).max()
               for value in (200, 40000)}
    assert as_read == {200: 200, 40000: 156}  # 8-bit values as they are; 16-bit ones scaled (40000 / 257)


def test_corrupt_images_named_up_to_five_with_the_count(tmp_path: Path) -> None:
    folder = tmp_path / "train"
    for i in range(3):
        write_image(folder / f"cat.{i}.jpg")
    for i in range(7):
        (folder / f"dog.{i}.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(DataError) as err:
        load_or_build(scan(folder).files, 16, tmp_path / "cache", folder=folder)
    message = str(err.value)
    assert message.startswith(f"{folder}: 7 corrupt images: dog.0.jpg, dog.1.jpg") and message.endswith("and 2 more")
    assert "\n" not in message and message.count("dog.") == 5
    assert not list((tmp_path / "cache").glob("*.npy")) and not list((tmp_path / "cache").glob(".*.tmp"))


BUILDER = """
import sys, time
from pathlib import Path
from shared.data import load_or_build, scan
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
arr, built = load_or_build(scan(Path(sys.argv[1])).files, 32, Path(sys.argv[3]), folder=Path(sys.argv[1]))
print(int(built), int(arr.astype('int64').sum()))
"""


@pytest.mark.slow
def test_concurrent_builders_in_separate_processes_end_with_one_valid_cache(tmp_path: Path) -> None:
    write_synthetic(tmp_path / "d", classes=["cat", "dog"], counts={"train": 300}, size=48)
    go, cache = tmp_path / "go", tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-c", BUILDER, str(tmp_path / "d" / "train"), str(go), str(cache)],
                              cwd=REPO, stdout=subprocess.PIPE, text=True) for _ in range(3)]
    time.sleep(1.0)  # let all three import and wait at the start line
    go.touch()
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(int(o[0]) for o in outs) == [0, 0, 1]  # one decoded; the others waited and read it
    assert len({o[1] for o in outs}) == 1
    assert len(list(cache.glob("*.npy"))) == 1 and not list(cache.glob(".*.tmp"))
    arr, built = load_or_build(scan(tmp_path / "d" / "train").files, 32, cache, folder=tmp_path)
    assert not built and int(arr.astype("int64").sum()) == int(outs[0][1])


def test_crop_flip_is_a_padded_window_maybe_mirrored() -> None:
    batch = torch.randint(0, 256, (6, 12, 12, 3), dtype=torch.uint8)
    out = crop_flip(batch, torch.Generator().manual_seed(0), pad=2)
    assert out.shape == batch.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(batch, (0, 0, 2, 2, 2, 2))
    for i in range(6):
        windows = [padded[i, y:y + 12, x:x + 12] for y in range(5) for x in range(5)]
        candidates = windows + [w.flip(1) for w in windows]
        assert any(torch.equal(out[i], w) for w in candidates)
    assert torch.equal(out, crop_flip(batch, torch.Generator().manual_seed(0), pad=2))


def test_augment_shapes_formats_and_seeding() -> None:
    for size in (32, 96):
        batch = torch.randint(0, 256, (4, size, size, 3), dtype=torch.uint8)
        a = augment(batch, torch.Generator().manual_seed(1), channels_last=True)
        b = augment(batch, torch.Generator().manual_seed(1), channels_last=True)
        assert a.shape == (4, 3, size, size) and a.dtype == torch.float32 and torch.equal(a, b)
        assert a.is_contiguous(memory_format=torch.channels_last) and torch.isfinite(a).all()
    plain = to_input(torch.full((1, 8, 8, 3), 255, dtype=torch.uint8), channels_last=False)
    assert plain.is_contiguous() and abs(float(plain[0, 0, 0, 0]) - (1 - 0.485) / 0.229) < 1e-5
    crops = resized_crop_flip(torch.randint(0, 256, (3, 96, 96, 3), dtype=torch.uint8), torch.Generator().manual_seed(0))
    assert crops.shape == (3, 3, 96, 96) and 0 <= float(crops.min()) and float(crops.max()) <= 255


def test_the_crop_grid_is_affine_grids_for_a_scale_and_shift() -> None:
    """The random resized crop builds its sampling grid by broadcasting; it must be the grid that
    torch's affine_grid gives for the same scale-and-shift matrix, mirrored crops included."""
    from shared.data.augment import _crop_grid

    gen = torch.Generator().manual_seed(3)
    sx, sy = torch.rand(5, generator=gen) * 2 - 1, torch.rand(5, generator=gen)  # sx < 0: a mirror
    cx, cy = torch.rand(5, generator=gen) - 0.5, torch.rand(5, generator=gen) - 0.5
    theta = torch.zeros(5, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, sy, cy
    for height, width in ((96, 96), (40, 72)):
        expected = torch.nn.functional.affine_grid(theta, [5, 3, height, width], align_corners=False)
        assert torch.allclose(_crop_grid(sx, cx, sy, cy, height, width), expected, atol=1e-6)


def test_a_first_decode_tells_its_progress_as_images_are_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Told only as each chunk of 64 was done, a folder of 80 large photos showed no progress for 28 s.
    The count rises within a chunk, never repeats (the progress writer reads that as a new pass), and
    ends at the whole."""
    from shared.data import cache as cache_module

    write_synthetic(tmp_path / "d", classes=["cat", "dog"], counts={"train": 40}, size=24)
    files = scan(tmp_path / "d" / "train").files
    real_decode = cache_module.decode

    def slow_decode(path: Path, size: int) -> np.ndarray:
        time.sleep(0.03)  # a large photo's decode, in miniature
        return real_decode(path, size)

    monkeypatch.setattr(cache_module, "decode", slow_decode)
    monkeypatch.setattr(cache_module, "PROGRESS_POLL_S", 0.05)
    told: list[tuple[int, int]] = []
    load_or_build(files, 16, tmp_path / "cache", folder=tmp_path, progress=lambda done, of: told.append((done, of)))
    counts = [done for done, _ in told]
    assert len(counts) > 2 and counts[-1] == 40 and all(of == 40 for _, of in told)  # 40 images: one chunk
    assert counts == sorted(set(counts))  # rising, each told once
