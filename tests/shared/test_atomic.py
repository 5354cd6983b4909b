"""The one temp-file-and-rename: a reader sees the old file or the whole new one, never a part."""
from __future__ import annotations

from pathlib import Path

import pytest

from shared.atomic import atomic_path, atomic_write


def test_atomic_write_replaces_the_file_and_leaves_no_temp(tmp_path: Path) -> None:
    out = tmp_path / "f.txt"
    out.write_text("old")
    with atomic_write(out, "w") as fh:
        fh.write("new")
        assert out.read_text() == "old"  # not visible before the block ends
    assert out.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temp(tmp_path: Path) -> None:
    out = tmp_path / "f.bin"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(out) as fh:
        fh.write(b"half")
        raise RuntimeError("disk gone")
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_atomic_path_for_writers_that_want_a_name(tmp_path: Path) -> None:
    out = tmp_path / "arr.npy"
    with atomic_path(out) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.name.endswith(".tmp")
        tmp.write_bytes(b"data")
    assert out.read_bytes() == b"data"
    with pytest.raises(ValueError), atomic_path(tmp_path / "never.npy") as tmp:
        tmp.write_bytes(b"x")
        raise ValueError("bad image")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arr.npy"]
