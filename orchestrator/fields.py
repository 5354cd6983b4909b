"""The CLI's view of the specs: one option per spec field, and the cells a set of option values makes.

The specs (shared/spec.py) are the single source: an option's name, value type, allowed values,
default and help come from its field (type, Literal values, default, description), and a field
declared with `axis()` takes a comma list in a grid command. The tables below hold the only
exceptions. No click and no torch here: `orch models` and `orch submit` share this parsing.
"""
from __future__ import annotations

import itertools
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from orchestrator.options import comma_items
from shared.errors import SpecError
from shared.spec import RESNEXT_BASE, Spec, TrainSpec, is_axis, parse

# spec field (its path from the command's spec) -> its option where the name is not the field's;
# None: not an option (the CLI sets it). A new field needs an entry only if it is one of these.
OPTION_NAMES: dict[str, str | None] = {
    "model.arch": "--model",  # orch submit names the model by its architecture
    "model.num_classes": None,  # orch submit takes it from the data's classes
    "inputs": None,  # orch submit score pins the checkpoint and the folder it found
}
# a grid axis whose comma list reads better in the plural
LIST_NAMES: dict[str, str] = {"seed": "--seeds"}
SCALARS: tuple[type, ...] = (bool, int, float, str)


@dataclass(frozen=True)
class OptionField:
    """One spec field as a command-line option."""

    path: str  # "model.norm"
    option: str  # "--norm"
    listed: bool  # takes a comma list: a grid axis of a grid command
    axis: bool  # a grid axis (whether or not this command takes it as a list)
    annotation: Any  # the field's type without its `| None`
    default: Any  # the spec's default; None where there is none or it means "the architecture's own"
    required: bool
    help: str

    @property
    def dest(self) -> str:
        """The click parameter name (and the key in a project file)."""
        return self.option.lstrip("-").replace("-", "_")

    @property
    def choices(self) -> tuple[str, ...] | None:
        return tuple(get_args(self.annotation)) if get_origin(self.annotation) is Literal else None

    @property
    def kind(self) -> type:
        return str if self.choices else self.annotation  # type: ignore[no-any-return]

    def parse_item(self, value: Any) -> Any:
        """One typed-in value (or one item of a comma list); ValueError says what is wrong with it."""
        text = (str(value).lower() if isinstance(value, bool) else str(value)).strip()  # TOML gives numbers
        if self.choices is not None:
            if text not in self.choices:
                raise ValueError(f"unknown {text!r}; allowed: {', '.join(self.choices)}")
            return text
        return _scalar(self.kind, text)


def _scalar(kind: type, text: str) -> Any:
    if kind is int:
        digits = text.removeprefix("-")
        if not (digits.isascii() and digits.isdigit()):  # isdigit alone takes '²', which int() refuses
            raise ValueError(f"{text!r} is not a whole number")
        return int(text)
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{text!r} is not true or false")
        return text.lower() in ("true", "1")
    return text


def option_fields(cls: type[Spec], *, grid: bool, exclude: Iterable[str] = ()) -> tuple[OptionField, ...]:
    """`cls`'s fields as options, nested specs flattened; in a grid command the axes take lists."""
    skip = set(exclude)
    return tuple(f for f in _walk(cls, "", grid) if f.path not in skip)


def _walk(cls: type[BaseModel], prefix: str, grid: bool) -> Iterable[OptionField]:
    for name, info in cls.model_fields.items():
        path = prefix + name
        annotation = _without_none(info.annotation)
        option = OPTION_NAMES.get(path, "--" + name.replace("_", "-"))
        if option is None:
            continue
        if isinstance(annotation, type) and issubclass(annotation, Spec):
            yield from _walk(annotation, path + ".", grid)
            continue
        if get_origin(annotation) is not Literal and annotation not in SCALARS:
            raise TypeError(f"{cls.__name__}.{name}: no option type for {annotation!r}; give it a "
                            f"bool, int, float, str or Literal type, or {{{path!r}: None}} in "
                            "orchestrator.fields.OPTION_NAMES if the CLI sets it")
        listed = grid and is_axis(info)
        yield OptionField(path, LIST_NAMES.get(path, option) if listed else option, listed, is_axis(info),
                          annotation, None if info.is_required() else info.default, info.is_required(),
                          info.description or "")


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def parse_list(field: OptionField, raw: Any) -> list[Any]:
    """'1,8,32' -> [1, 8, 32] (None -> [None]: the spec's default); a bad item names the option."""
    if raw is None:
        return [None]
    items = comma_items(field.option, str(raw), _example(field))
    try:
        return [field.parse_item(item) for item in items]
    except ValueError as exc:
        raise SpecError(field.option, f"{exc} (in {raw!r}); give a comma list such as {_example(field)}") from None


def _example(field: OptionField) -> str:
    if field.choices:
        return ",".join(field.choices[:2])
    if field.dest == "seeds":
        return "0,1,2"
    return {int: "1,8,32", float: "0.1,0.01"}.get(field.kind, "a,b")


def cells(fields: Sequence[OptionField], values: dict[str, Any]) -> list[dict[str, Any]]:
    """The cross product of the listed options' values: one {path: value} per cell (None: default)."""
    axes = [parse_list(f, values.get(f.dest)) if f.listed else [values.get(f.dest)] for f in fields]
    return [dict(zip((f.path for f in fields), combo, strict=True)) for combo in itertools.product(*axes)]


def nested(flat: dict[str, Any]) -> dict[str, Any]:
    """{"model.norm": "bn", "lr": 0.1} -> {"model": {"norm": "bn"}, "lr": 0.1}; None values left out
    (the spec's default), parents kept so that a nested spec of all defaults is still given."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        *parents, leaf = path.split(".")
        node = out
        for parent in parents:
            node = node.setdefault(parent, {})
        if value is not None:
            node[leaf] = value
    return out


def parse_cells(cls: type[Spec], fields: Sequence[OptionField], flat_cells: Iterable[dict[str, Any]],
                fixed: dict[str, Any] | None = None) -> list[Any]:
    """Every cell validated as `cls` (errors name the option); repeated cells given once."""
    specs: dict[str, Spec] = {}
    for cell in flat_cells:
        spec = parse_option(cls, fields, nested({**cell, **(fixed or {})}))
        specs.setdefault(spec.spec_hash(), spec)
    return list(specs.values())


def parse_option(cls: type[Spec], fields: Sequence[OptionField], data: dict[str, Any]) -> Any:
    try:
        return parse(cls, data)
    except SpecError as exc:
        raise as_option_error(exc, fields) from None


def as_option_error(exc: SpecError, fields: Sequence[OptionField]) -> SpecError:
    """The same error naming the option that sets the field, as the user typed it."""
    options = {f.path: f.option for f in fields}
    option = options.get(exc.field) or "--" + exc.field.rsplit(".", 1)[-1].replace("_", "-")
    return SpecError(option, exc.message)


def default_arch(fields: Sequence[OptionField], values: dict[str, Any]) -> tuple[str, str] | None:
    """(the model option's name, resnet50) when groups above 1 are asked for and no model is given:
    the ResNeXt paper's base; None when the model is given or the groups do not call for it."""
    by_path = {f.path: f for f in fields}
    arch, groups = by_path.get("model.arch"), by_path.get("model.groups")
    if arch is None or groups is None or values.get(arch.dest) is not None:
        return None
    counts = parse_list(groups, values.get(groups.dest)) if groups.listed else [values.get(groups.dest)]
    return (arch.dest, RESNEXT_BASE) if any(g is not None and g > 1 for g in counts) else None


TRAIN_FIELDS = option_fields(TrainSpec, grid=False)  # orch submit train: one value each
GRID_FIELDS = option_fields(TrainSpec, grid=True)  # orch submit ablation: the axes take comma lists


def axis_values(spec: TrainSpec) -> dict[str, Any]:
    """A training spec's grid axes as built (the norm and width the network got): {option name: value},
    seed included. The leaderboard's config columns are these, so a new axis is a new column."""
    built = spec.model_copy(update={"model": spec.model.as_built()})
    return {f.dest: _value_at(built, f.path) for f in TRAIN_FIELDS if f.axis}


# the training settings beside the grid axes: the leaderboard's JSON and CSV carry them all, its table
# those that differ between the runs it ranks (two runs of adam and of sgd with a step schedule read
# as identical rows)
SETTINGS = ("image_size", "stem", "val_fraction", "pretrained", "optimizer", "momentum", "weight_decay", "schedule",
            "label_smoothing", "compile")


def setting_values(spec: TrainSpec) -> dict[str, Any]:
    """A training spec's SETTINGS: {option name: value}."""
    return {f.dest: _value_at(spec, f.path) for f in TRAIN_FIELDS if f.dest in SETTINGS}


def _value_at(spec: BaseModel, path: str) -> Any:
    value: Any = spec
    for name in path.split("."):
        value = getattr(value, name)
    return value
