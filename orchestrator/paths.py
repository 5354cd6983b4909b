"""The paths a command is given, checked before anything is queued or computed: one-line errors
that name the option, never a traceback from a write that fails later."""
from __future__ import annotations

from pathlib import Path

from shared.errors import SpecError


def existing_path(option: str, raw: str | None, *, folder: bool, required: bool = False) -> str | None:
    """`raw` as an absolute path that exists; None when not given, unless `required` (the help marks
    such an option required, but click cannot enforce it: an orch.toml may give it instead)."""
    if raw is None:
        if required:
            require_given(option, raw, folder=folder)
        return None
    path = Path(not_blank(option, raw, "a folder" if folder else "a file")).expanduser().resolve()
    if folder and not path.is_dir():
        raise SpecError(option, f"{raw} is a file, not a folder" if path.is_file() else f"no such folder: {raw}")
    if not folder and not path.is_file():
        raise SpecError(option, f"{raw} is a folder, not a file" if path.is_dir() else f"no such file: {raw}")
    return str(path)


def not_blank(option: str, raw: str, what: str) -> str:
    """`raw`, unless empty: Path('') is the current folder, so `--data "$DATA"` with DATA unset read the
    folder the command ran in, and `orch data synth ""` wrote its 2,800 images there."""
    if not raw.strip():
        raise SpecError(option, f"empty path; give {what}")
    return raw


def require_given(option: str, raw: str | None, *, folder: bool, project_key: str | None = None) -> None:
    """SpecError unless `raw` was given (on the command line or by an orch.toml). `project_key`: the
    orch.toml key that gives it, named when an orch.toml is in use but lacks it (it said "run orch init"
    in a folder that had one)."""
    if raw is None:
        import click

        from orchestrator.options import PROJECT_KEY

        what = "FOLDER" if folder else "FILE"
        ctx = click.get_current_context(silent=True)
        project = ctx.meta.get(PROJECT_KEY) if ctx is not None else None
        if project is not None and project_key is not None:
            raise SpecError(option, f"required: give {option} {what}, or a {project_key} = \"{what}\" line in "
                                    f"{project}, which has none")
        raise SpecError(option, f"required: give {option} {what}, or run "
                                "`orch init` in the data folder to write an orch.toml that gives it")


def output_path(option: str, raw: str | Path, example: str) -> Path:
    """`raw` as an absolute path a file can be written to: not a folder, in a folder that exists."""
    out = Path(not_blank(option, str(raw), f"a file name such as {example}")).expanduser().resolve()
    if out.is_dir():
        raise SpecError(option, f"{raw} is a folder; give a file name such as {Path(raw) / example}")
    if not out.parent.is_dir():
        raise SpecError(option, f"no such folder: {out.parent}")
    return out
