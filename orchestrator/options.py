"""click options generated from spec fields (orchestrator/fields.py), and the project file's note.

Every generated option defaults to None, meaning "not given": the project file (orch.toml, through
click's default_map) fills it next, and the spec's own default last, so defaults resolve in the
spec and nowhere else. The help shows the spec's default and the allowed values.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

if TYPE_CHECKING:  # the CLI's entry point imports this module for PROJECT_KEY: no specs at start-up
    from orchestrator.fields import OptionField

PROJECT_KEY = "orch.project_file"  # ctx.meta: the orch.toml the command's defaults came from


class FieldType(click.ParamType):
    """One value of a spec field: a Literal's names, a number or text, with one-line errors."""

    def __init__(self, field: OptionField):
        self.field = field
        self.name = field.kind.__name__

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return self.field.parse_item(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str | None:
        return metavar(self.field)


SHORT_CHOICES = 30  # longer lists of allowed values go into the help text, not the metavar


# the text fields that are paths: their metavar says which kind ('--data TEXT' said nothing)
PATH_METAVARS = {"data": "FOLDER", "val": "FOLDER", "pretrained": "FILE", "checkpoint": "FILE", "out": "FILE",
                 "labels": "FILE"}


def metavar(field: OptionField) -> str:
    if field.choices and len("|".join(field.choices)) <= SHORT_CHOICES:
        one = "|".join(field.choices)
    else:
        path = PATH_METAVARS.get(field.path.rsplit(".", 1)[-1]) if field.kind is str else None
        one = field.dest.upper() if field.choices else path or {int: "INT", float: "X"}.get(field.kind, "TEXT")
    if field.listed:
        return f"{one}[,...]"
    return f"[{one}]" if "|" in one else one


def option_help(field: OptionField, default: str | None = None) -> str:
    """The field's description, the allowed values when the metavar cannot hold them, and the default."""
    parts = [field.help]
    if field.choices and "|" not in metavar(field):
        parts.append(f"Allowed: {', '.join(field.choices)}.")
    if field.listed:
        parts.append("Comma list.")
    shown = default if default is not None else _default_text(field)
    if shown:
        parts.append(f"[default: {shown}]")
    return " ".join(p for p in parts if p)


def _default_text(field: OptionField) -> str:
    if field.default is None or field.kind is bool:
        return ""
    return str(field.default)


def make_option(field: OptionField, overrides: dict[str, Any] | None = None) -> Callable[..., Any]:
    """The click option for one field; `overrides` replaces any click setting, and its "default_text"
    what the help shows as the default."""
    settings = dict(overrides or {})
    shown = settings.pop("default_text", None)
    generated: dict[str, Any] = {"default": None, "required": field.required, "help": option_help(field, shown),
                                 "metavar": metavar(field)}
    if field.kind is bool and not field.listed:
        generated.update(is_flag=True, metavar=None)
    else:
        generated["type"] = str if field.listed else FieldType(field)  # lists: parsed per cell (fields.cells)
    return click.option(field.option, field.dest, **{**generated, **settings})


def spec_options(fields: Sequence[OptionField],
                 overrides: dict[str, dict[str, Any]] | None = None) -> Callable[[Callable[..., Any]], Any]:
    """Add one option per field (in field order) and, when the command runs, say which values the
    project file gave it. `overrides` is keyed by field path."""
    def decorate(fn: Callable[..., Any]) -> Any:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            note_project_values(click.get_current_context())
            return fn(*args, **kwargs)

        for field in reversed(fields):
            run = make_option(field, (overrides or {}).get(field.path))(run)
        return run

    return decorate


def note_project_values(ctx: click.Context) -> None:
    """One line on stderr naming the project file and the options it set, when it set any."""
    taken = [p for p in ctx.command.params
             if p.name and ctx.get_parameter_source(p.name) is ParameterSource.DEFAULT_MAP
             and not (p.name == "labels" and ctx.params.get("no_labels"))]  # `submit score --no-labels`
    if taken:
        names = ", ".join(max(p.opts, key=len) for p in taken)
        click.echo(f"orch: {names} from {ctx.meta[PROJECT_KEY]}", err=True)


def option_name(param: click.Parameter | None) -> str:
    """How an error names a parameter: its long option, or the argument's name."""
    if isinstance(param, click.Option) and param.opts:
        return max(param.opts, key=len)
    return param.human_readable_name if param is not None else "input"


def comma_items(option: str, raw: str, example: str) -> list[str]:
    """A comma list's items, stripped; an empty item is refused in every list alike (`report --job 1,,2`
    read 1,2 where 1,12,2 may have been meant, while `--seeds 0,,1` was refused)."""
    from shared.errors import SpecError

    items = [item.strip() for item in raw.split(",")]
    if items == [""]:  # `--gpus ''` (an unset variable): "empty item in ''" read oddly
        raise SpecError(option, f"empty; give a comma list such as {example}")
    if not all(items):
        raise SpecError(option, f"empty item in {raw!r}; give a comma list such as {example}")
    return items


QUEUE_NAME = "letters, digits, '.', '_' and '-'"


def queue_names(ctx: click.Context | None, param: click.Parameter | None, value: str) -> str:
    """A --queue NAME or --queues A,B callback: names a broker takes (an empty one queued a job where
    no worker reads; 'a b' failed in the broker with a traceback, after the job was recorded)."""
    import re

    names = value.split(",")
    bad = next((name for name in names if not re.fullmatch(r"[A-Za-z0-9._-]+", name)), None)
    if bad is not None:
        option = param.opts[0] if param is not None else "--queue"
        listed = ", comma-separated" if option == "--queues" else ""
        raise click.BadParameter(f"queue name {bad!r}: use {QUEUE_NAME}{listed}", param_hint=option)
    return value
