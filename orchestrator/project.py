"""orch.toml: a project's defaults, found as git finds .git (the nearest one upward from the working
directory). Defaults layer as: the spec's own < the project file < flags.

The file's keys are the options of `orch submit train` by name (data, val, image_size, model,
epochs, ...) plus `test`, the folder `orch submit score` scores; paths are relative to the file.
`orch init` writes one from what a data folder holds. No torch, no click.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.fields import OptionField

PROJECT_FILE = "orch.toml"
PATH_KEYS = frozenset({"data", "val", "test", "test_labels", "pretrained"})
TEST_KEY = "test"  # the folder to score: `orch submit score --data`
TEST_LABELS_KEY = "test_labels"  # its id,label CSV: `orch submit score --labels`
SCORE_KEYS = {TEST_KEY: "data", TEST_LABELS_KEY: "labels"}  # the keys only `orch submit score` takes


def find_project(start: Path) -> Path | None:
    """The nearest orch.toml in `start` or a folder above it."""
    for folder in (start, *start.parents):
        candidate = folder / PROJECT_FILE
        if candidate.is_file():
            return candidate
    return None


def read_project(path: Path) -> dict[str, Any]:
    """The file's values, checked (ConfigError names the file and the key); paths made absolute."""
    import tomllib

    # here, not at the top: every command looks for a project file, and the fields load the specs
    from orchestrator.fields import TRAIN_FIELDS

    try:
        values = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable TOML file ({exc})") from None
    fields = {f.dest: f for f in TRAIN_FIELDS}
    for key, value in values.items():
        if key not in fields and key not in SCORE_KEYS:
            import difflib

            known = [*fields, *SCORE_KEYS]
            close = difflib.get_close_matches(key, known, n=1)
            meant = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{path}: unknown key {key!r}; {meant}allowed: {', '.join(known)}")
        values[key] = _checked(path, key, value, fields.get(key))
    return values


def _checked(path: Path, key: str, value: Any, field: OptionField | None) -> Any:
    if key in PATH_KEYS:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: {key}: expected a path in quotes, got {value!r}")
        return str((path.parent / value).resolve())
    assert field is not None  # every key but the paths is an option field (checked by the caller)
    if isinstance(value, list):
        raise ConfigError(f"{path}: {key}: one value per key, got a list; a grid goes on the command line "
                          f"(orch submit ablation {field.option} a,b)")
    try:
        return field.parse_item(value)
    except ValueError as exc:
        raise ConfigError(f"{path}: {key}: {exc}") from None


def default_maps(values: dict[str, Any]) -> dict[str, Any]:
    """click's default_map for the commands the file sets: submit train, ablation and score."""
    from orchestrator.fields import GRID_FIELDS, TRAIN_FIELDS

    train = {key: value for key, value in values.items() if key not in SCORE_KEYS}
    grid_dest = {f.path: f.dest for f in GRID_FIELDS}  # seed -> seeds
    ablation = {grid_dest[f.path]: train[f.dest] for f in TRAIN_FIELDS if f.dest in train}
    score = {option: values[key] for key, option in SCORE_KEYS.items() if key in values}
    return {"submit": {"train": train, "ablation": ablation, "score": score}}


def render_project(entries: list[tuple[str, Any, str]], header: str) -> str:
    """TOML text: one `key = value  # comment` line per entry; a key starting with '#' is a line
    left commented out (a suggestion)."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for key, value, comment in entries:
        text = json.dumps(value) if isinstance(value, str) else str(value)  # JSON strings are TOML strings
        lines.append(f"{key} = {text}" + (f"  # {comment}" if comment else ""))
    return "\n".join(lines) + "\n"
