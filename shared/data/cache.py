"""Decode once: a folder's images, resized, as one uint8 array file under the orch home.

The key is the file list with each file's size and mtime, plus the image size, so a changed,
added or removed file makes a new cache and an unchanged folder is decoded once per image size
for every epoch and every job of a study. The array is NHWC uint8 (`.npy`), opened memory-mapped:
jobs that share a folder share its pages, and a batch is gathered without a DataLoader.
Builders serialise on a lock file and publish with an atomic rename, so two processes building
the same cache at once end with one valid file.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np

from shared.atomic import atomic_path, atomic_write, exclusive_lock
from shared.errors import DataError

CACHE_VERSION = 2  # bump when the decode (resize, crop) changes, to leave old caches unused (2: 16-bit greys)
JPEG_START = b"\xff\xd8"  # every JPEG file's first two bytes (SOI)
# the JPEGs whose RGB libjpeg-turbo computes as PIL does; CMYK and YCCK files go to PIL (libjpeg-turbo's
# CMYK to RGB rounds differently: off by one in most pixels)
FAST_COLORSPACES = ("YCbCr", "Gray")
CHUNK = 64  # images per decode task: big enough to amortise one write
PROGRESS_POLL_S = 0.5  # how often a build tells its progress, as its images are decoded


def cache_path(files: list[Path], size: int, cache_dir: Path) -> Path:
    digest = hashlib.sha256(f"v{CACHE_VERSION}:{size}".encode())
    folders: dict[Path, Path] = {}  # each folder resolved once: resolve() walks every component (0.14 s for 2,000 files)
    for f in files:
        try:
            st = f.stat()
            folder = folders.get(f.parent) or folders.setdefault(f.parent, f.parent.resolve())
        except OSError as exc:
            raise DataError(f"{f.parent}: cannot read {f.name} ({exc.strerror or exc})") from None
        digest.update(f"\0{folder / f.name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return Path(cache_dir) / f"{digest.hexdigest()[:40]}-{size}px-{len(files)}.npy"


def load_or_build(files: list[Path], size: int, cache_dir: Path, *, folder: Path,
                  progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, bool]:
    """(N x size x size x 3 uint8 array, built): the cached decode of `files`, building it if needed.

    DataError naming `folder` (and up to five files) if any image cannot be decoded. `progress` is
    told (images decoded, of) after each chunk of a build.
    """
    path = cache_path(files, size, cache_dir)
    cached = _open(path, len(files), size)
    if cached is not None:
        _mark_used(path)
        if not note_path(path).exists():  # built before caches had notes: this read proves it current
            _write_note(path, folder, size, len(files), built=False)
        return cached, False
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(lock_path(path)):
        cached = _open(path, len(files), size)  # another process built it while we waited
        if cached is not None:
            return cached, False
        _build(files, size, path, folder, progress)
        _write_note(path, folder, size, len(files))
        built = _open(path, len(files), size)  # under the lock: `orch data cache --prune` takes it to remove
    if built is None:
        raise DataError(f"{folder}: the image cache {path} was not readable after it was written")
    return built, True


def lock_path(path: Path) -> Path:
    """The lock a cache's builder holds (and `orch data cache --prune` before removing the cache)."""
    return path.with_suffix(".lock")


def note_path(path: Path) -> Path:
    """The JSON note beside a cache: which folder, image size and count, and decode version made it."""
    return path.with_suffix(".json")


def _write_note(path: Path, folder: Path, size: int, n: int, built: bool = True) -> None:
    """For `orch data cache`: the cache's name is a hash, which says nothing of its folder. A cache
    with no note is one no orch that writes them has read (`--prune` removes it)."""
    note = {"folder": str(Path(folder).resolve()), "size": size, "images": n, "version": CACHE_VERSION,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z") if built else None}
    try:
        with atomic_write(note_path(path), "w") as fh:
            json.dump(note, fh)
    except OSError:  # only informational: the cache itself is whole
        pass


def _mark_used(path: Path) -> None:
    """The cache's mtime is its last read: the age `orch data cache --prune` goes by (a read-only home
    keeps the old time)."""
    try:
        os.utime(path)
    except OSError:
        pass


def decode(path: Path, size: int) -> np.ndarray:
    """One image as size x size x 3 uint8: shorter side resized to `size`, then centre-cropped."""
    data = Path(path).read_bytes()
    drafted = _jpeg_drafted(data, size) if data[:2] == JPEG_START else None
    if drafted is not None and drafted.shape[:2] == (size, size):
        return drafted  # a JPEG stored at the cache's size: nothing to resize or crop
    from PIL import Image

    if drafted is not None:
        return _resize_crop(Image.fromarray(drafted), size)
    with Image.open(io.BytesIO(data)) as source:
        # JPEG only: let libjpeg decode at 1/2, 1/4 or 1/8 scale when the photo is much larger
        # than `size`, which is most of the decode time for camera-sized images.
        source.draft("RGB", (size, size))
        return _resize_crop(_as_rgb(source), size)


def _as_rgb(image: Any) -> Any:
    """The image in 8-bit RGB. PIL's convert clips a 16-bit grey's values at 255 rather than scaling
    them: a 16-bit PNG (mode I;16, or I in older Pillows) read as pure white, without a word."""
    if image.mode.startswith("I;16") or image.mode == "I":
        from PIL import Image

        values = np.asarray(image, dtype=np.float64)
        deep = image.mode.startswith("I;16") or values.max() > 255  # mode I also holds 8-bit values
        grey = np.clip(np.rint(values / 257.0 if deep else values), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    return image.convert("RGB")


def _jpeg_drafted(data: bytes, size: int) -> np.ndarray | None:
    """The RGB pixels PIL's draft("RGB", (size, size)) + convert("RGB") gives for this JPEG, decoded by
    simplejpeg (libjpeg-turbo without PIL's Python-side header parsing, and without the GIL: 0.2 against
    0.48 ms for a 112-px JPEG on a 2-core EPYC); None where it cannot or should not (CMYK, a broken
    file...), and PIL then decodes the file, or reports it broken.

    PIL's draft picks a scale of 1/1, 1/2, 1/4 or 1/8; asking libjpeg for at least the size that scale
    gives selects that same scale, so the pixels are PIL's (tests/shared/test_jpeg_decode.py)."""
    import simplejpeg

    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        if colorspace not in FAST_COLORSPACES:
            return None
        fits = min(width // size, height // size)
        scale = next((s for s in (8, 4, 2, 1) if fits >= s), 1)
        pixels: np.ndarray = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=-(-height // scale),
                                                    min_width=-(-width // scale))
    except ValueError:  # simplejpeg raises ValueError for whatever libjpeg refused
        return None
    return pixels


def _resize_crop(im: Any, size: int) -> np.ndarray:
    from PIL import Image

    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    pixels: np.ndarray = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)
    return pixels


def _open(path: Path, n: int, size: int) -> np.ndarray | None:
    """The cache at `path` memory-mapped, or None if absent or not the expected shape."""
    try:
        arr: np.ndarray = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if arr.shape != (n, size, size, 3) or arr.dtype != np.uint8:
        return None
    return arr


def _build(files: list[Path], size: int, path: Path, folder: Path,
           progress: Callable[[int, int], None] | None) -> None:
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a builder that died; we hold the lock
        stale.unlink(missing_ok=True)
    shape = (len(files), size, size, 3)
    with atomic_path(path, fsync=False) as tmp:  # a cache: a crash costs a rebuild, not data
        with tmp.open("wb") as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False, "shape": shape})
            header = fh.tell()
            fh.truncate(header + len(files) * size * size * 3)
        bad = _decode_into(tmp, header, files, size, progress)
        if bad:
            raise DataError(corrupt_message(folder, bad))


def _decode_into(path: Path, offset: int, files: list[Path], size: int,
                 progress: Callable[[int, int], None] | None) -> list[Path]:
    """Decode `files` into the file at `path` from byte `offset` on, as consecutive size x size x 3
    images, on all cores (simplejpeg, PIL and file writes release the GIL); return the undecodable files.

    Each task decodes its chunk into a buffer of its own and writes it at the chunk's offset with one
    write. Filling a memory-mapped file instead faults its pages in one at a time, each a page-cache
    allocation on the file system: 2,000 112-px JPEGs took 0.21-0.22 s that way and 0.15-0.19 s this
    way, 20,000 took 1.8-2.1 s against 1.4-1.8 s (2-core EPYC, ext4; BENCHMARKS.md, eighth session:
    the lower ends with os.pwrite, the seek + write here measured as fast side by side).
    And a full disk is an OSError to retry, where a write through a mapping is a SIGBUS."""
    per_image = size * size * 3
    decoded = [0]  # images done, counted by every task; read by this thread, which alone tells `progress`
    counting = threading.Lock()

    def work(start: int) -> list[Path]:
        chunk = np.zeros((min(CHUNK, len(files) - start), size, size, 3), dtype=np.uint8)
        bad = []
        for i, file in enumerate(files[start:start + len(chunk)]):
            try:
                chunk[i] = decode(file, size)
            except Exception:  # PIL raises OSError, SyntaxError, ValueError... for broken files
                bad.append(file)
            with counting:
                decoded[0] += 1
        write_at(path, offset + start * per_image, chunk.data)
        return bad

    told = 0
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        tasks = [pool.submit(work, start) for start in range(0, len(files), CHUNK)]
        pending = set(tasks)
        while pending:
            # told as images are done, not only as chunks are: a chunk of 64 photos of 4000x3000 px took
            # 15 s, and a first decode showed nothing for 28 s; each count told is higher than the last
            # (the progress writer reads an equal or lower one as a new pass)
            _, pending = wait(pending, timeout=PROGRESS_POLL_S)
            now = len(files) if not pending else decoded[0]
            if progress and now > told:
                progress(now, len(files))
                told = now
        return [file for task in tasks for file in task.result()]


def write_at(path: Path, offset: int, data: memoryview) -> None:
    """Write `data` into the existing file at `path` from byte `offset` on (a handle of its own per
    call: the builder threads share no file position; os.pwrite would do the same, but not on Windows)."""
    with path.open("r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def corrupt_message(folder: Path, bad: list[Path]) -> str:
    names = ", ".join(_relative(p, folder) for p in bad[:5])
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    return f"{folder}: {len(bad)} corrupt image{'s' if len(bad) > 1 else ''}: {names}{more}"


def _relative(path: Path, folder: Path) -> str:
    try:
        return str(path.relative_to(folder))
    except ValueError:
        return str(path)
