"""`orch data`: data-set tools. `orch data synth` writes a learnable synthetic image set.

Thin: parse, call `shared.data.synth`, show progress. PIL and numpy load inside the command.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from orchestrator.context import CliState, pass_state
from orchestrator.options import comma_items


@click.group("data")
def data() -> None:
    """Data-set tools.

    \b
    Example:
      orch data synth data --train 400 --val 100 --test 100 --size 32
      orch data cache --prune
    """


@data.command("synth")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--classes", default="cat,dog", show_default=True, metavar="A,B[,...]",
              help="Class names, comma-separated (at least two; no dots or slashes).")
@click.option("--train", "n_train", default=2000, show_default=True, type=click.IntRange(0),
              help="Training images.")
@click.option("--val", "n_val", default=400, show_default=True, type=click.IntRange(0),
              help="Validation images.")
@click.option("--test", "n_test", default=400, show_default=True, type=click.IntRange(0),
              help="Numbered test images (labels in OUT/test_labels.csv).")
@click.option("--size", default=64, show_default=True, type=click.IntRange(8, 1024), metavar="PX",
              help="Image side in pixels.")
@click.option("--layout", default="flat", show_default=True, type=click.Choice(["flat", "folder"]),
              help="flat: train/cat.12.jpg (label = name prefix); folder: train/cat/12.jpg (ImageFolder).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0), help="Same seed, same files.")
def synth(out: str, classes: str, n_train: int, n_val: int, n_test: int, size: int, layout: str,
          seed: int) -> None:
    """Write a learnable image set: OUT/train, OUT/val, OUT/test (0.jpg, 1.jpg, ...) and
    OUT/test_labels.csv (id,label; label is the class index, classes in sorted order).

    Classes differ by the orientation of a striped texture, not by colour, so a ResNet needs a
    few epochs to learn them: at the defaults, resnet18 with BatchNorm passes 95% validation
    accuracy within 4 epochs (the README's demo); smaller or smaller-pixel sets take longer.
    Deterministic by --seed.

    \b
    Examples:
      orch data synth data                                  # 2000/400/400 cat,dog images at 64 px
      orch data synth small --train 200 --val 50 --test 50 --size 32
      orch data synth zoo --classes ant,bee,cow --layout folder --size 112
    """
    from orchestrator.paths import not_blank
    from shared.data.synth import check_classes, check_empty, write_synthetic

    folder = Path(not_blank("OUT", out, "a folder such as data"))
    names = sorted(comma_items("--classes", classes, "cat,dog"))
    check_classes(names)  # a DataError: one line, exit 2, before any file is written
    counts = {"train": n_train, "val": n_val, "test": n_test}
    if not any(counts.values()):
        raise click.BadParameter("all 0: nothing to write", param_hint=["--train", "--val", "--test"])
    check_empty(folder, [split for split, n in counts.items() if n])
    total = sum(counts.values())
    with click.progressbar(length=total, label=f"writing {total} images to {folder}", file=sys.stderr) as bar:
        written = write_synthetic(folder, classes=names, counts=counts, size=size, layout=layout, seed=seed,
                                  progress=bar.update)
    click.echo(f"wrote {written} images ({', '.join(f'{k} {v}' for k, v in counts.items())}) "
               f"of {', '.join(names)} at {size} px to {folder}")


@data.command("cache")
@click.option("--prune", is_flag=True,
              help="Remove the stale caches: made by an older decode, of a folder that is gone, or unused "
                   "for --unused-days.")
@click.option("--unused-days", default=30.0, show_default=True, type=click.FloatRange(0), metavar="DAYS",
              help="With --prune: a cache no job has read for this long is stale.")
@click.option("--all", "everything", is_flag=True, help="With --prune: remove every cache.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: the caches, or what --prune removed.")
@pass_state
def cache(obj: CliState, prune: bool, unused_days: float, everything: bool, as_json: bool) -> None:
    """List the decoded-image caches under ORCH_HOME/cache, or remove the stale ones.

    Every folder a job reads is decoded once per image size into one file there, which every later
    epoch and job of that folder reads instead of the images. Nothing removes them by itself: a
    changed folder gets a new cache and leaves the old one. A job running now keeps the cache it has
    open; the next job of a removed cache's folder decodes the folder again.

    \b
    Examples:
      orch data cache                                # each cache: its folder, px, images, MB, last use
      orch data cache --prune                        # remove the stale ones
      orch data cache --prune --unused-days 7 --json
      orch data cache --prune --all                  # remove them all
    """
    import json as json_lib
    import time

    from orchestrator.tables import print_table
    from shared.data.cache_admin import list_caches
    from shared.data.cache_admin import prune as prune_caches

    if everything and not prune:
        raise click.BadParameter("removes caches only with --prune: add --prune", param_hint="--all")
    given = click.get_current_context().get_parameter_source("unused_days") == click.core.ParameterSource.COMMANDLINE
    if given and not prune:
        raise click.BadParameter("applies to --prune only: add --prune", param_hint="--unused-days")
    folder = obj.settings.cache_dir
    if prune:
        done = prune_caches(folder, unused_days, everything)
        if as_json:
            click.echo(json_lib.dumps(done, indent=2))
            return
        for row in done["removed"]:
            click.echo(f"removed {row['file']} ({row['mb']} MB{', ' + row['folder'] if 'folder' in row else ''}): "
                       f"{row['why']}")
        for name in done["busy"]:
            click.echo(f"kept {name}: a job is building it now")
        files, kept = len(done["removed"]), done["kept"]
        kept_line = f"kept {kept} cache{'s' * (kept != 1)} read in the last {unused_days:g} days"
        if files:
            click.echo(f"{folder}: freed {done['freed_mb']} MB in {files} file{'s' * (files != 1)}"
                       + ("" if everything else f"; {kept_line}"))
        else:
            click.echo(f"{folder}: nothing stale; {kept_line} (--all removes every one)" if kept
                       else f"{folder}: no decoded-image caches")
        return
    now = time.time()
    rows = [entry.as_row(now) for entry in list_caches(folder)]
    if as_json:
        click.echo(json_lib.dumps(rows, indent=2))
    elif not rows:
        click.echo(f"{folder}: no decoded-image caches")
    else:
        n = len(rows)
        print_table(rows, title=f"{folder}: {n} cache{'s' * (n != 1)}, {sum(r['mb'] for r in rows):.1f} MB")
