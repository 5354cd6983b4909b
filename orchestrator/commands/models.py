"""`orch models`: what a model spec builds (width per group, parameters, multiply-adds).

Thin: parse the option lists, validate each combination as a ModelSpec (torch-free), then import
the model zoo inside the command so `orch --help` never loads torch.
"""
from __future__ import annotations

import json
from typing import Any

import click

from orchestrator.fields import cells, option_fields, parse_cells
from orchestrator.options import spec_options
from shared.spec import ARCHS, BOTTLENECK_ARCHS, RESNET_ARCHS, ModelSpec

COLUMNS = ("arch", "groups", "width_per_group", "norm", "params", "gmacs")
FIELDS = option_fields(ModelSpec, grid=True, exclude=("pretrained",))  # the axes take comma lists
OVERRIDES = {"arch": {"default_text": "every architecture; only the ResNets the knobs apply to when "
                                      "--groups, --width-per-group or --norm is given"}}


@click.command("models")
@spec_options(FIELDS, OVERRIDES)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of objects with keys "
                                                      f"{', '.join(COLUMNS)}.")
def models(as_json: bool, **options: Any) -> None:
    """Show what a model spec builds: one row per combination of the comma lists.

    gmacs are giga multiply-adds for one image at --image-size (what the ResNet and ResNeXt
    papers call FLOPs), counted by PyTorch's flop counter; params include the classifier.

    \b
    Examples:
      orch models                                  # every architecture at its defaults
      orch models --arch resnet50 --groups 1,2,4,8,32   # the ResNeXt paper's Table 2
      orch models --arch resnet50 --groups 32 --width-per-group 4   # resnext50_32x4d
      orch models --arch resnet18,resnet34 --norm bn,ln,in,gn --image-size 32
      orch models --arch mobilenet_v2 --num-classes 2 --json
    """
    specs = build_specs(options)
    from shared.models import describe  # torch: only once the input is known to be good

    rows = [describe(spec) for spec in specs]
    click.echo(json.dumps(rows, indent=2) if as_json else format_table(rows))


def build_specs(options: dict[str, Any]) -> list[ModelSpec]:
    """Validate every combination of the option lists; SpecError names the option at fault."""
    if options.get("arch") is None:  # knobs without --arch: the architectures they apply to
        knobs = {name for name in ("groups", "width_per_group", "norm") if options.get(name) is not None}
        archs = BOTTLENECK_ARCHS if knobs & {"groups", "width_per_group"} else RESNET_ARCHS if knobs else ARCHS
        options = {**options, "arch": ",".join(archs)}
    return parse_cells(ModelSpec, FIELDS, cells(FIELDS, options))


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain aligned columns (numbers right-aligned): readable, greppable, no terminal tricks."""
    cells = [list(COLUMNS)] + [[_cell(key, row[key]) for key in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    left = {"arch", "norm"}
    return "\n".join(
        "  ".join(c.ljust(w) if k in left else c.rjust(w) for k, c, w in zip(COLUMNS, line, widths, strict=True)).rstrip()
        for line in cells
    )


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "params":
        return f"{value:,}"
    if key == "gmacs":
        return f"{value:.3f}"
    return str(value)
