"""`orch report`: the leaderboard, per job or per config over seeds."""
from __future__ import annotations

import json

import click

from orchestrator.context import Context, pass_context
from orchestrator.metrics import METRICS
from orchestrator.tables import print_table, render
from shared.errors import OrchError


@click.command()
@click.option("--study", "study_id", type=int, help="One study: configs grouped over seeds, mean ± std and n.")
@click.option("--metric", type=click.Choice(list(METRICS)), default="val_acc", show_default=True,
              help="What ranks the rows (val_loss: lower is better).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "md"]), default="table", show_default=True)
@click.option("--per-job", is_flag=True, help="With --study: one row per job instead of per config.")
@pass_context
def report(obj: Context, study_id: int | None, metric: str, fmt: str, per_job: bool) -> None:
    """Rank training runs: best val accuracy, loss, params, GMACs, images/s, test accuracy.

    \b
    Examples:
      orch report                          # every training job, best first
      orch report --study 3                # an ablation: mean ± std over seeds per config
      orch report --study 3 --format md    # paste into a paper draft or a README
      orch report --metric test_acc --format csv > leaderboard.csv
    """
    from orchestrator.report import for_display, group_over_seeds, job_rows, rank
    from shared.store import Study

    with obj.store.session() as s:
        if study_id is not None and s.get(Study, study_id) is None:
            raise OrchError(f"--study: no study {study_id}")
        rows = job_rows(s, study_id)
    grouped = study_id is not None and not per_job
    ranked = group_over_seeds(rows, metric) if grouped else rank(rows, metric)
    if fmt == "json":
        click.echo(json.dumps(ranked, indent=2))
    elif fmt in ("csv", "md"):
        click.echo(render(for_display(ranked, metric, grouped), fmt))
    elif not ranked:
        click.echo("no epochs recorded yet: `orch status` shows queued and running jobs "
                   "(is a worker running? `orch worker`); to start one: `orch submit train --help`")
    else:
        title = f"study {study_id}: {metric} mean ± std over seeds" if grouped else f"leaderboard by {metric}"
        print_table(for_display(ranked, metric, grouped), title=title)
