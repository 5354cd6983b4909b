"""What a torch.save file looks like, read without torch: the CLI checks a file before anything is
queued (a CSV given as --pretrained was queued, and failed on the worker with torch's advice to load
it with weights_only=False, which runs whatever a pickle holds)."""
from __future__ import annotations

from pathlib import Path

ZIP = b"PK\x03\x04"  # torch.save's format since torch 1.6
PICKLE = b"\x80"  # the legacy format: a pickle protocol byte first


def not_a_torch_file(path: Path) -> str | None:
    """Why `path` cannot be a torch.save file, or None when it may be one (its contents are torch's to judge)."""
    with open(path, "rb") as file:
        head = file.read(4)
    if head.startswith(ZIP) or head.startswith(PICKLE):
        return None
    return f"{path} is not a PyTorch file (torch.save writes a zip archive; this starts with {head!r})"
