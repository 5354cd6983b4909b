"""The decode cache's JPEG fast path (simplejpeg) gives PIL's pixels, for every kind of file it takes,
and leaves to PIL what it does not take (CMYK, PNG, broken files), which then reports them as before."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from shared.data import load_or_build
from shared.data.cache import _jpeg_drafted, _resize_crop, decode
from shared.errors import DataError


def pil_decode(path: Path, size: int) -> np.ndarray:
    """What the cache decoded before the fast path: PIL alone, draft, convert, resize, crop."""
    from PIL import Image

    with Image.open(path) as source:
        source.draft("RGB", (size, size))
        return _resize_crop(source.convert("RGB"), size)


def jpeg(path: Path, width: int, height: int, *, mode: str = "RGB", seed: int = 0, **save: object) -> Path:
    """A photo-like JPEG (a gradient with noise, so the DCT has work), saved with PIL's `save` options."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, width)[None, :, None] + np.linspace(0, 50, height)[:, None, None]
    pixels = np.clip(ramp + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", **save)
    return path


# (width, height): at the size, smaller, and 2x, 4x, 8x and more larger, so PIL's draft picks each of
# its scales (1, 1/2, 1/4, 1/8), odd sizes whose scaled side rounds up, portrait and landscape
SHAPES = [(112, 112), (90, 140), (224, 224), (300, 241), (450, 301), (641, 480), (901, 1203), (2000, 1500)]
SAVES = {"420": {"quality": 90, "subsampling": 2}, "422": {"quality": 85, "subsampling": 1},
         "444": {"quality": 95, "subsampling": 0}, "progressive": {"quality": 80, "progressive": True},
         "optimized": {"quality": 75, "optimize": True}}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("kind", list(SAVES))
def test_jpeg_fast_path_gives_pils_pixels(tmp_path: Path, shape: tuple[int, int], kind: str) -> None:
    path = jpeg(tmp_path / "a.jpg", *shape, **SAVES[kind])
    assert _jpeg_drafted(path.read_bytes(), 112) is not None  # the fast path took it
    for size in (112, 64, 32):
        fast, reference = decode(path, size), pil_decode(path, size)
        assert fast.shape == (size, size, 3) and fast.dtype == np.uint8
        np.testing.assert_array_equal(fast, reference)


def test_greyscale_jpeg_decodes_to_three_equal_channels_as_pil_does(tmp_path: Path) -> None:
    path = jpeg(tmp_path / "grey.jpg", 300, 200, mode="L", quality=90)
    assert _jpeg_drafted(path.read_bytes(), 64) is not None
    fast = decode(path, 64)
    np.testing.assert_array_equal(fast, pil_decode(path, 64))
    assert (fast[..., 0] == fast[..., 1]).all() and (fast[..., 1] == fast[..., 2]).all()


def test_cmyk_jpeg_and_png_are_left_to_pil(tmp_path: Path) -> None:
    cmyk = jpeg(tmp_path / "cmyk.jpg", 160, 120, mode="CMYK", quality=90)
    assert _jpeg_drafted(cmyk.read_bytes(), 64) is None  # libjpeg-turbo will not give RGB from CMYK
    np.testing.assert_array_equal(decode(cmyk, 64), pil_decode(cmyk, 64))
    from PIL import Image

    png = tmp_path / "a.png"
    Image.open(jpeg(tmp_path / "b.jpg", 130, 100)).save(png)
    np.testing.assert_array_equal(decode(png, 64), pil_decode(png, 64))


def test_a_truncated_or_garbled_jpeg_is_reported_as_corrupt(tmp_path: Path) -> None:
    good = jpeg(tmp_path / "d" / "0.jpg", 200, 150, quality=90).read_bytes()
    (tmp_path / "d" / "1.jpg").write_bytes(good[: len(good) // 2])  # truncated
    (tmp_path / "d" / "2.jpg").write_bytes(good[:2] + b"\x00" * 200)  # a JPEG start, then nothing valid
    assert _jpeg_drafted(good[: len(good) // 2], 64) is None
    files = sorted((tmp_path / "d").glob("*.jpg"))
    with pytest.raises(DataError, match=r"2 corrupt images: 1\.jpg, 2\.jpg"):
        load_or_build(files, 64, tmp_path / "cache", folder=tmp_path / "d")


def test_a_jpeg_with_an_exif_block_and_a_comment_decodes_as_pil_does(tmp_path: Path) -> None:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: PIL's decode does not rotate, so neither does the fast path
    exif[0x010F] = "orch"
    path = jpeg(tmp_path / "exif.jpg", 320, 240, quality=90, exif=exif.tobytes(), comment=b"scanned")
    buffer = io.BytesIO(path.read_bytes())
    assert Image.open(buffer).getexif()[0x0112] == 6
    np.testing.assert_array_equal(decode(path, 100), pil_decode(path, 100))
