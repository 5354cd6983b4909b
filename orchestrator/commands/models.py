"""`orch models`: what a model spec builds (width per group, parameters, multiply-adds).

Thin: parse the option lists, validate each combination as a ModelSpec (torch-free), then import
the model zoo inside the command so `orch --help` never loads torch.
"""
from __future__ import annotations

import itertools
import json
from typing import Any

import click

from shared.errors import SpecError
from shared.spec import ARCHS, BOTTLENECK_ARCHS, NORMS, RESNET_ARCHS, ModelSpec, parse

COLUMNS = ("arch", "groups", "width_per_group", "norm", "params", "gmacs")
STEMS = ("auto", "imagenet", "small")


@click.command("models")
@click.option("--arch", "archs", metavar="A[,A...]", default=None,
              help=f"Architectures, comma-separated. Allowed: {', '.join(ARCHS)}. "
                   "Default: every architecture (only the ResNets the knobs apply to when "
                   "--groups, --width-per-group or --norm is given).")
@click.option("--groups", metavar="G[,G...]", default=None,
              help="Cardinality (ResNeXt), comma-separated; bottleneck depths only "
                   f"({', '.join(BOTTLENECK_ARCHS)}). Default 1.")
@click.option("--width-per-group", metavar="W[,W...]", default=None,
              help="Channels per group, comma-separated. Default: chosen to keep the groups=1 "
                   "multiply-adds, as in the ResNeXt paper's Table 2 (32x4d, 8x14d, 4x24d, 2x40d, 1x64d).")
@click.option("--norm", metavar="N[,N...]", default=None,
              help="Norm layers, comma-separated: bn (BatchNorm), ln (GroupNorm(1, C): LayerNorm over C,H,W), "
                   "in (InstanceNorm, affine), gn (GroupNorm(32, C)). ResNets only. Default bn.")
@click.option("--stem", default="auto", show_default=True, metavar="|".join(STEMS),
              help="imagenet (7x7 stride 2 + max-pool), small (3x3 stride 1, no max-pool), "
                   "auto (small for images of 64 px or less).")
@click.option("--image-size", default=224, show_default=True, type=int, metavar="PX",
              help="Square input size the multiply-adds are counted at (at least 32).")
@click.option("--num-classes", default=1000, show_default=True, type=int, metavar="N",
              help="Classes of the final layer (changes params).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of objects with keys "
                                                      f"{', '.join(COLUMNS)}.")
def models(archs: str | None, groups: str | None, width_per_group: str | None, norm: str | None,
           stem: str, image_size: int, num_classes: int, as_json: bool) -> None:
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
    specs = build_specs(archs, groups, width_per_group, norm, stem, image_size, num_classes)
    from shared.models import describe  # torch: only once the input is known to be good

    rows = [describe(spec) for spec in specs]
    click.echo(json.dumps(rows, indent=2) if as_json else format_table(rows))


def build_specs(archs: str | None, groups: str | None, widths: str | None, norms: str | None,
                stem: str, image_size: int, num_classes: int) -> list[ModelSpec]:
    """Validate every combination of the option lists; SpecError names the option at fault."""
    _choice("--stem", stem, STEMS)
    arch_list = [_choice("--arch", a, ARCHS) for a in _split("--arch", archs)] if archs else None
    norm_list = [_choice("--norm", n, NORMS) for n in _split("--norm", norms)] if norms else [None]
    group_list = _ints("--groups", groups) if groups else [1]
    width_list = _ints("--width-per-group", widths) if widths else [None]
    if arch_list is None:  # knobs without --arch: the architectures they apply to
        arch_list = list(BOTTLENECK_ARCHS if groups or widths else RESNET_ARCHS if norms else ARCHS)
    specs = []
    for arch, g, w, n in itertools.product(arch_list, group_list, width_list, norm_list):
        fields: dict[str, Any] = {"arch": arch, "groups": g, "width_per_group": w, "norm": n,
                                  "stem": stem, "image_size": image_size, "num_classes": num_classes}
        try:
            specs.append(parse(ModelSpec, fields))
        except SpecError as exc:
            raise SpecError(f"--{exc.field.replace('_', '-')}", str(exc)[len(exc.field) + 2:]) from None
    return specs


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain aligned columns (numbers right-aligned): readable, greppable, no terminal tricks."""
    cells = [list(COLUMNS)] + [[_cell(key, row[key]) for key in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    left = {"arch", "norm"}
    return "\n".join(
        "  ".join(c.ljust(w) if k in left else c.rjust(w) for k, c, w in zip(COLUMNS, line, widths)).rstrip()
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


def _split(option: str, text: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise SpecError(option, f"empty item in {text!r}; give a comma list such as a,b")
    return items


def _ints(option: str, text: str) -> list[int]:
    items = _split(option, text)
    bad = [item for item in items if not item.isdigit()]
    if bad:
        raise SpecError(option, f"{bad[0]!r} is not a positive integer; give a comma list such as 1,8,32")
    return [int(item) for item in items]


def _choice(option: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise SpecError(option, f"unknown {value!r}; allowed: {', '.join(allowed)}")
    return value
