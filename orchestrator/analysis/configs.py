"""Configs: the runs of a study grouped by a seedless hash of their spec.

Any spec field separates configs (lr, batch size, attention, a field added next year), not a
hand-kept list of keys; a config's label names only the fields that vary within the study.
"""
from __future__ import annotations

import hashlib
import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from orchestrator.options import comma_items
from shared.errors import OrchError
from shared.spec import TrainSpec, read_stored
from shared.store.report_reads import RunRecord

SEED = "seed"


def flatten(spec: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model": {"norm": "bn"}, "lr": 0.1} -> {"model.norm": "bn", "lr": 0.1}."""
    flat: dict[str, Any] = {}
    for key, value in spec.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = tuple(value) if isinstance(value, list) else value
    return flat


def config_hash(spec: dict[str, Any]) -> str:
    """A spec's identity without its seed (nested or flattened): runs that differ only by seed share it."""
    seedless = {k: v for k, v in spec.items() if k != SEED}
    return hashlib.sha256(json.dumps(seedless, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def spec_fields(stored: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A stored spec without its seed, read the typed way every reader fills defaults
    (shared.spec.read_stored): as submitted (a field added since then has its default, so it splits
    nothing), and as the network was built (norm bn rather than None), flattened."""
    spec = read_stored(TrainSpec, stored)
    built = spec.model_copy(update={"model": spec.model.as_built()})

    def seedless(s: TrainSpec) -> dict[str, Any]:
        return flatten({k: v for k, v in s.model_dump(mode="json").items() if k != SEED})

    return seedless(spec), seedless(built)


def run_value(run: RunRecord, metric: str) -> float | None:
    """A run's result: best epoch's val_acc and its val_loss, the last epoch's val_acc, test accuracy,
    mean images/s (orchestrator.metrics.WHICH_VALUE)."""
    if metric == "test_acc":
        return run.test_acc
    if metric == "images_per_s":
        return statistics.fmean(e["images_per_s"] for e in run.epochs)
    if metric == "last_val_acc":
        return max(run.epochs, key=lambda e: e["epoch"])["val_acc"]
    best = max(run.epochs, key=lambda e: (e["val_acc"], -e["epoch"]))
    return best[metric]


@dataclass
class Config:
    """The runs of one seedless spec; `label` is set once the whole study is known.

    `submitted` holds the spec's fields as written (what separates configs); `fields` the same with
    the model's defaults resolved (what the labels and tables show: bn, not None).
    """

    key: str
    submitted: dict[str, Any]
    fields: dict[str, Any]
    runs: list[RunRecord] = field(default_factory=list)
    label: str = ""

    def by_seed(self, metric: str) -> dict[int, float]:
        """One value per seed (two runs of the same seed, from two studies, are averaged)."""
        values: dict[int, list[float]] = defaultdict(list)
        for run in self.runs:
            value = run_value(run, metric)
            if value is not None:
                values[int(run.spec.get(SEED, 0))].append(value)
        return {seed: statistics.fmean(v) for seed, v in sorted(values.items())}

    def precisions(self) -> dict[str, list[int]]:
        """The precision each run trained in (its result says; --precision auto picks per worker) ->
        its seeds. Runs from before results recorded it, or not finished, are not in it."""
        ran: dict[str, set[int]] = defaultdict(set)
        for run in self.runs:
            if run.result.get("precision"):
                ran[str(run.result["precision"])].add(int(run.spec.get(SEED, 0)))
        return {name: sorted(seeds) for name, seeds in sorted(ran.items())}

    def info(self, key: str) -> Any:
        """A model_info value (params, gmacs) of the config's first run that has it."""
        return next((run.model_info[key] for run in self.runs if run.model_info.get(key) is not None), None)


def group_runs(runs: list[RunRecord], by_job: bool = False) -> list[Config]:
    """Configs in the order of their first run, each labelled by the fields that vary."""
    return group_with_absent(runs, by_job)[0]


def group_with_absent(runs: list[RunRecord], by_job: bool = False,
                      absent: dict[int, dict[str, Any]] | None = None) -> tuple[list[Config], dict[int, str]]:
    """Configs in the order of their first run, each labelled by the fields that vary, and the
    labels of `absent` (job id -> spec: the study's jobs not in its statistics, queued, running or
    failed). Those count in what varies: a study whose other cells were still queued labelled its
    one finished config "all runs".

    by_job: one config per job (comparing single jobs' curves), labelled "job N" and its fields.
    """
    configs: dict[str, Config] = {}
    for run in runs:
        submitted, built = spec_fields(run.spec)
        key = f"job {run.id}" if by_job else config_hash(submitted)
        if key not in configs:
            configs[key] = Config(key=key, submitted=submitted, fields=built)
        configs[key].runs.append(run)
    found = list(configs.values())
    missing = {job_id: Config(key=str(job_id), submitted=fields[0], fields=fields[1])
               for job_id, fields in ((i, spec_fields(spec)) for i, spec in (absent or {}).items())}
    varying = varying_fields([*found, *missing.values()])
    names = short_names(sorted({k for c in [*found, *missing.values()] for k in c.fields}))
    for config in [*found, *missing.values()]:
        parts = [config.key] if by_job and config in found else []
        parts += [f"{names[k]}={show(config.fields.get(k))}" for k in varying]
        config.label = " ".join(parts) or "all runs"
    return found, {job_id: config.label for job_id, config in missing.items()}


def varying_fields(configs: list[Config]) -> list[str]:
    """Fields submitted with different values, in the spec's own order (a width that follows from
    the group count is not one: the groups already say it)."""
    keys = list(dict.fromkeys(k for c in configs for k in c.submitted))
    return [k for k in keys if len({json.dumps(c.submitted.get(k), default=str) for c in configs}) > 1]


def common_fields(configs: list[Config]) -> dict[str, Any]:
    """Fields every config shares (the study's fixed settings), by short name."""
    if not configs:
        return {}
    varying = set(varying_fields(configs))
    names = short_names(list(configs[0].fields))
    return {names[k]: v for k, v in configs[0].fields.items() if k not in varying}


def short_names(keys: list[str]) -> dict[str, str]:
    """model.norm -> norm, unless two fields end alike (then the dotted name stays)."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (tail if last.count(tail) == 1 else k) for k, tail in zip(keys, last, strict=True)}


def show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ",".join(map(show, value))
    return "-" if value is None else str(value)


def find_baseline(configs: list[Config], text: str) -> Config:
    """The one config matching 'norm=bn,groups=1' (field names short or dotted, '-' or '_'), or
    holding 'job=7' (with `orch report --job`, where each job is a config, no field may tell two apart)."""
    wanted = parse_baseline(text)
    jobs = [value for name, value in wanted if name == "job"]
    if jobs:
        if not all(value.isdigit() for value in jobs):
            raise OrchError(f"--baseline: job={jobs[0]}: expected a job id such as job=7")
        configs = [c for c in configs if {int(v) for v in jobs} <= {run.id for run in c.runs}]
        wanted = [(name, value) for name, value in wanted if name != "job"]
        if not configs:
            raise OrchError(f"--baseline: no config holds job {', '.join(jobs)}")
        if not wanted:
            return configs[0]
    keys = sorted({k for c in configs for k in c.fields})
    names = short_names(keys)
    lookup = {**{k: k for k in keys}, **{v: k for k, v in names.items()}}
    for name, _ in wanted:
        if name not in lookup:
            raise OrchError(f"--baseline: unknown field {name!r}; fields: {', '.join(sorted(set(names.values())))}")
    matches = [c for c in configs if all(_same(c.fields.get(lookup[n]), v) for n, v in wanted)]
    labels = "; ".join(c.label for c in configs)
    if not matches:
        raise OrchError(f"--baseline: no config has {text}; configs: {labels}")
    if len(matches) > 1:  # the ones it matched, to choose between (not every config)
        raise OrchError(f"--baseline: {text} matches {len(matches)} configs; name more fields, or one of "
                        f"its jobs (job=ID): {'; '.join(c.label for c in matches)}")
    return matches[0]


def parse_baseline(text: str) -> list[tuple[str, str]]:
    """--baseline's (field, value) pairs, in the form given; the fields are checked against the configs."""
    pairs = []
    # commas (an empty item refused as in every comma list: 'groups=8,' was taken for 'groups=8'), or the
    # spaces of a label as the report prints it ('norm=bn width_mult=1')
    for item in (part for chunk in comma_items("--baseline", text, "'norm=bn,groups=1'") for part in chunk.split()):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise OrchError(f"--baseline: expected FIELD=VALUE[,FIELD=VALUE...], got {text!r}")
        pairs.append((name.strip().replace("-", "_"), value.strip()))
    if not pairs:
        raise OrchError(f"--baseline: expected FIELD=VALUE[,FIELD=VALUE...], got {text!r}")
    return pairs


def _same(value: Any, text: str) -> bool:
    if show(value) == text:
        return True
    try:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and float(text) == float(value)
    except ValueError:
        return False
