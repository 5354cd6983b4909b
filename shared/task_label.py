"""What a task message says it is, for monitors: `job 7 · resnet50 · bn · groups 8 · seed 1 · study groups`.

Celery puts this text in the message's `argsrepr` header, which Flower and the worker's log show in
place of the arguments. The worker never reads it: the job id in `args` is the only argument it
trusts, and everything else comes from the store.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.store import Job, Store

SEP = " · "


def job_label(job: Job) -> str:
    """The label of a job read in an open session (its study is loaded on demand)."""
    study = (job.study.name or str(job.study.id)) if job.study is not None else None
    return describe(job.id, str(job.kind), job.spec, study=study, shard=job.shard, parent_id=job.parent_id,
                    source_job_id=job.source_job_id)


def describe(job_id: int, kind: str, spec: dict[str, Any], *, study: str | None = None, shard: int | None = None,
             parent_id: int | None = None, source_job_id: int | None = None) -> str:
    parts = [f"job {job_id}"]
    if kind == "train":
        model = spec.get("model", {})
        parts += [str(model.get("arch", "?"))]
        parts += [str(model.get("norm") or "bn")]  # as built: a spec stores the default norm as none
        parts += [f"groups {model['groups']}"] if model.get("groups", 1) != 1 else []
        parts += [f"width {model['width_mult']:g}"] if model.get("width_mult") is not None else []
        parts += [str(model["attention"])] if model.get("attention", "none") != "none" else []
        parts += [f"seed {spec.get('seed', 0)}"]
    elif kind == "score_shard":
        parts += [f"score shard {shard} of job {parent_id}"]
    else:
        parts += ["score" + (f" of job {source_job_id}" if source_job_id else ""), f"{spec.get('shards', 1)} shards"]
    parts += [f"study {study}"] if study else []
    return SEP.join(parts)


def label_for(store: Store, job_id: int) -> str | None:
    """The label of a job by id (for a re-send that has only the id); None if the job is gone."""
    from shared.store import Job

    with store.session() as s:
        job = s.get(Job, job_id)
        return job_label(job) if job is not None else None
