"""`orch models`: what a model spec builds (width per group, parameters, multiply-adds).

Thin: parse the option lists, validate each combination as a ModelSpec (torch-free), then import
the model zoo inside the command so `orch --help` never loads torch.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import click

from orchestrator.fields import cells, option_fields, parse_cells
from orchestrator.options import spec_options
from shared.errors import SpecError
from shared.spec import ARCHS, RESNEXT_BASE, ModelSpec

# shared.models.counting.DESCRIBE_KEYS, without importing torch
COLUMNS = ("arch", "groups", "width_per_group", "width_mult", "attention", "attention_reduction", "norm", "stem", "params",
           "gmacs")
OPTIONAL = {"attention_reduction": "reduction"}  # shown only where a row has one (se or cbam), under this name
PROGRESS_FROM = 6  # rows: counting a deep net takes about a second, and a grid of 36 was silent for 24 s
FIELDS = option_fields(ModelSpec, grid=True, exclude=("pretrained",))  # the axes take comma lists
# options that only some architectures take: without --arch, they pick the architectures
KNOBS = ("groups", "width_per_group", "width_mult", "attention", "attention_reduction", "norm")
OVERRIDES = {"arch": {"default_text": "every architecture; with --groups, --width-mult, --attention, --norm... "
                                      "only those that take every value given"}}


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
      orch models --arch resnet50 --attention none,se,cbam    # the CBAM paper's ImageNet table
      orch models --arch shufflenet_v1 --groups 1,2,3,4,8     # the ShuffleNet paper's Table 1
      orch models --arch mobilenet_v2 --width-mult 0.5,1.0,1.4 --num-classes 2 --json
    """
    specs = build_specs(options)
    from shared.archs import BOTTLENECK_ARCHS
    from shared.models import describe  # torch: only once the input is known to be good

    rows = [describe(spec) for spec in _shown_progress(specs)]
    click.echo(json.dumps(rows, indent=2) if as_json else format_table(rows))
    if not as_json and any(row["arch"] in BOTTLENECK_ARCHS for row in rows):
        click.echo("note: bottleneck ResNets stride on the first 1x1 of a downsampling block, as in the ResNet "
                   "paper (resnet50: 3.86 GMACs at 224 px); torchvision's v1.5 strides on the 3x3 (4.09)", err=True)


def build_specs(options: dict[str, Any]) -> list[ModelSpec]:
    """Validate every combination of the option lists; SpecError names the option at fault.

    Without --arch: every architecture, or with knobs given, those that take every value given
    (--groups 8: the bottleneck ResNets and shufflenet_v1); if none does, resnet50's error says why.
    """
    if options.get("arch") is not None:
        return parse_cells(ModelSpec, FIELDS, cells(FIELDS, options))
    knobs = any(options.get(name) is not None for name in KNOBS)
    specs: list[ModelSpec] = []
    errors: dict[str, SpecError] = {}
    for arch in ARCHS:
        try:
            specs += parse_cells(ModelSpec, FIELDS, cells(FIELDS, {**options, "arch": arch}))
        except SpecError as exc:
            if not knobs:  # a bad image size, say: wrong for every architecture
                raise
            errors[arch] = exc
    if not specs:
        raise errors[RESNEXT_BASE]
    return specs


def _shown_progress(specs: list[ModelSpec]) -> Iterator[ModelSpec]:
    """The specs, with a bar on stderr while they are counted, where stderr is a terminal and there are
    enough of them to wait for."""
    if len(specs) < PROGRESS_FROM or not sys.stderr.isatty():
        yield from specs
        return
    with click.progressbar(specs, label=f"counting {len(specs)} models", file=sys.stderr) as bar:
        yield from bar


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain aligned columns (numbers right-aligned): readable, greppable, no terminal tricks."""
    keys = [key for key in COLUMNS if key not in OPTIONAL or any(row[key] is not None for row in rows)]
    cells = [[OPTIONAL.get(key, key) for key in keys]] + [[_cell(key, row[key]) for key in keys] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(keys))]
    left = {"arch", "attention", "norm", "stem"}
    return "\n".join(
        "  ".join(c.ljust(w) if k in left else c.rjust(w) for k, c, w in zip(keys, line, widths, strict=True)).rstrip()
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
