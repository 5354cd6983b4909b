"""`orch status [ID]`: recent jobs, or one job with its spec and epoch metrics."""
from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from orchestrator.context import CliState, pass_state
from orchestrator.tables import for_display, print_table
from shared.archs import RESNET_ARCHS
from shared.config import DEFAULT_QUEUE
from shared.errors import OrchError
from shared.job_status import JobStatus
from shared.spec import SPEC_FOR_KIND, ModelSpec, Spec, TrainSpec, read_stored

if TYPE_CHECKING:
    from shared.store import Job
    from shared.store.scoring_runs import ShardCount


def typed_spec(job: Job) -> Spec:
    return read_stored(SPEC_FOR_KIND[job.kind], job.spec)


def job_summary(job: Job, spec: Spec, last: tuple[int, float] | None,
                shards: ShardCount | None = None, study_name: str | None = None) -> dict[str, Any]:
    """One row of `orch status`; `last` is the job's last (epoch, val_acc), `shards` a score job's
    shards by state. A field a score job has not is None, as in JSON elsewhere."""
    train = spec if isinstance(spec, TrainSpec) else None
    # progress: epochs for training, shards for a score job (which stays queued while they run)
    progress = (f"{last[0]}/{train.epochs}" if last and train
                else f"{shards.succeeded}/{shards.total} shards" if shards else None)
    # here: `orch --help` loads this module, and progress the store
    from orchestrator.progress import current_progress, share, trained_again

    inside = current_progress(job.progress, last[0] if last else None) if job.status == "running" else None
    if inside:  # inside the next epoch, a scoring shard's pass over its images, or a first decode
        again = trained_again(inside, last[0] if last else None)  # resumed from an earlier checkpoint: from there
        before = None if not train else f"{inside['epoch'] - 1}/{train.epochs}" if again else progress or f"0/{train.epochs}"
        progress = _pass_column(inside["phase"], f"{share(inside):.0f}%", before) + (" again" if again else "")
    return {
        "id": job.id, "kind": job.kind, "status": job.status, "study": job.study_id, "study_name": study_name,
        "model": train.model.arch if train else None, "norm": train.model.norm_name if train else None,
        "groups": train.model.as_built().groups if train else None,  # None (left out) where the arch has none
        # "none" where the arch takes attention (the report's value), None where it does not (the MobileNets)
        "attention": train.model.attention if train and train.model.arch in RESNET_ARCHS else None,
        "attention_reduction": train.model.as_built().attention_reduction if train else None,  # None without attention
        "width_mult": train.model.as_built().width_mult if train else None,  # 1.0 as built, not blank as defaulted
        "lr": train.lr if train else None, "seed": train.seed if train else None, "epoch": progress,
        # for scripts: the epoch column above is a display string ("2/4 +30%")
        "epochs_done": (last[0] if last else 0) if train else None, "epochs_total": train.epochs if train else None,
        "progress": inside,
        "val_acc": round(last[1], 4) if last else None, "attempts": job.attempts,
        # those ORCH_MAX_ATTEMPTS counts: not the ones before an `orch retry`, nor those a worker's stop ended
        "attempts_counted": job.attempts - (job.retried_at_attempt or 0),
        "worker": job.worker_host, "queue": job.queue, "error": job.error,
        "cancel_requested": bool(job.cancel_requested) if job.status == "running" else None,
        "shards": asdict(shards) if shards else None,  # a scoring run's shards: succeeded, running, total
    }


def _pass_column(phase: str, done: str, epochs: str | None) -> str:
    """The list's progress column inside a pass: '2/4 +30%' (training epoch 3), '2/4 validating 30%',
    'decoding 30%' (after the epochs done, on a resume), 'scoring 30%'."""
    if phase == "training":
        return f"{epochs} +{done}"
    words = f"{'validating' if phase == 'validation' else phase} {done}"
    return f"{epochs} {words}" if epochs else words


def table_row(row: dict[str, Any], lease_ttl: float) -> dict[str, Any]:
    """A listing row as the terminal shows it: the study by name where it has one (its id in JSON), the
    last epoch's val_acc named so (progress, where the leaderboard ranks by the best epoch's), and a
    running job whose worker stopped answering marked (`silent_note` says what that means)."""
    hidden = ("study_name", "progress", "heartbeat_age_s", "lease_s", "cancel_requested", "shards", "attempts_counted",
              "epochs_done", "epochs_total")
    shown = {("last val_acc" if k == "val_acc" else k): v for k, v in row.items() if k not in hidden}
    shown["study"] = row["study_name"] or row["study"]
    # a column only where a job is on another queue: a job no worker reads stayed queued with no clue why
    shown["queue"] = row.get("queue") if row.get("queue") != DEFAULT_QUEUE else None
    if is_silent(row, lease_ttl):
        shown["status"] = "running?"
    elif row.get("cancel_requested"):  # `orch cancel` asked; the job's process stops at its next step
        shown["status"] = "cancelling"
    elif row["status"] == "queued" and row.get("shards") and row["shards"]["running"] + row["shards"]["succeeded"]:
        shown["status"] = "scoring"  # its shards run: the parent job waits in the store for the last one
    return shown


STATES = tuple(JobStatus)  # --state's choices, in a job's order

# the newer axes' defaults: a column of nothing else is left out of the table (JSON keeps it), as a
# column of blanks is; a study of se against none shows both
TABLE_DEFAULTS = {"attention": "none", "attention_reduction": ModelSpec.model_fields["attention_reduction"].default}


def without_defaults(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` without the columns of TABLE_DEFAULTS that hold nothing but the default (or no value)."""
    same = {key for key, default in TABLE_DEFAULTS.items() if all(row.get(key) in (None, default) for row in rows)}
    return [{k: v for k, v in row.items() if k not in same} for row in rows]


def is_silent(row: dict[str, Any], lease_ttl: float) -> bool:
    return row["status"] == "running" and (row.get("heartbeat_age_s") or 0) > lease_s(row, lease_ttl)


def lease_s(row: dict[str, Any], lease_ttl: float) -> float:
    """The running job's lease as its holder took it (`liveness`), or this CLI's ORCH_LEASE_TTL: a worker
    started with ORCH_LEASE_TTL=120 was said not answering after 30 s of a CLI's default."""
    from shared.store.reads import lease_of  # here: `orch --help` loads this module, and reads the store

    return lease_of(row.get("lease_s"), lease_ttl)


def silent_note(rows: list[dict[str, Any]], lease_ttl: float, max_attempts: int) -> str | None:
    """Under the list: running jobs whose worker has not beaten for longer than the lease. After a
    kill -9 of every worker, `orch status` said "running" for ever; only `orch status ID` told. A job
    on its last attempt is failed by the sweeper, not resumed (it said "resumes" of those too)."""
    silent = [row for row in rows if is_silent(row, lease_ttl)]
    if not silent:
        return None
    ids = ", ".join(str(row["id"]) for row in silent)
    age = _duration(min(row["heartbeat_age_s"] for row in silent))
    which = f"job {ids} is" if len(silent) == 1 else f"jobs {ids} are"
    leases = sorted({lease_s(row, lease_ttl) for row in silent})
    lease = f"the lease is {leases[0]:.0f} s" if len(leases) == 1 else \
        f"the leases are {', '.join(f'{s:.0f}' for s in leases)} s"
    cancelled = [row["id"] for row in silent if row.get("cancel_requested")]  # the sweeper ends those cancelled
    spent = [row["id"] for row in silent if is_last_attempt(row, max_attempts) and row["id"] not in cancelled]
    resumed = [row["id"] for row in silent if row["id"] not in spent + cancelled]
    several = len([group for group in (resumed, spent, cancelled) if group]) > 1
    then = []
    if resumed:
        then.append(f"takes {_them(resumed, several)} over and resumes from the last checkpoint")
    if spent:
        then.append(f"fails {_them(spent, several)}, whose attempts are spent (ORCH_MAX_ATTEMPTS={max_attempts}; "
                    f"`orch retry {spent[0]}` then resumes it)")
    if cancelled:
        then.append(f"ends {_them(cancelled, several)} cancelled, as asked")
    return (f"running?: {which} recorded as running, but no worker has answered for {age} ({lease}): "
            f"a live worker's sweeper {', and '.join(then)} (`orch worker` starts one)")


def unread_note(obj: CliState, rows: list[dict[str, Any]]) -> str | None:
    """Under the list: queued jobs on a queue no running worker reads. With the only worker of `big`
    stopped, or `--queue typo`, the list showed them queued and nothing more. The workers are asked
    (a second) only where no listed job runs on the queue with a live worker, which proves one reads it."""
    from orchestrator.workers import unread_queues

    served = {row["queue"] for row in rows if row["status"] == "running" and not is_silent(row, obj.settings.lease_ttl)}
    # a scoring run's parent has no message while its shards run: they are the jobs that wait for a worker
    waiting = {row["queue"] for row in rows if row["status"] == "queued" and row["kind"] != "score"} - served
    if not waiting:
        return None
    found = unread_queues(obj, waiting)
    if found is None:
        return None
    ids = [str(row["id"]) for row in rows if row["status"] == "queued" and row["queue"] in found[0]]
    return f"queued: job{'s' * (len(ids) > 1)} {', '.join(ids)}: {found[1]}"


def _them(ids: list[int], named: bool) -> str:
    """'it' or 'them', or the jobs named where the note says different things of different jobs."""
    if not named:
        return "it" if len(ids) == 1 else "them"
    return f"job {ids[0]}" if len(ids) == 1 else f"jobs {', '.join(map(str, ids))}"


def is_last_attempt(row: dict[str, Any], max_attempts: int) -> bool:
    """Its attempts that count are spent: when its lease expires, the sweeper fails it."""
    return int(row.get("attempts_counted") or 0) >= max_attempts


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def heartbeat_line(age_s: float, lease_ttl: float, last_attempt: bool = False, cancelling: bool = False) -> str:
    """How long ago the running job's worker last said it was alive, and what happens if it is gone (as
    `silent_note` says it under the list: a cancel asked ends it cancelled, before the attempts count)."""
    if age_s <= lease_ttl:
        return f"{age_s:.0f} s ago"
    then = ("ends it cancelled, as `orch cancel` asked" if cancelling else
            "fails it, its attempts being spent (ORCH_MAX_ATTEMPTS); `orch retry` then resumes it from its last "
            "checkpoint" if last_attempt else "takes the job over and it resumes from its last checkpoint")
    return f"{age_s:.0f} s ago: its worker is not answering (the lease is {lease_ttl:.0f} s); a live worker's sweeper {then}"


STEP_QUIET_S = 60.0  # progress is written every 5 s of steps: a minute without one is said (validation, or stuck)


def liveness(job: Job, now: float) -> dict[str, float | None]:
    """Seconds since a running job's worker last beat, on the database's clock, and the lease its holder
    took (its ORCH_LEASE_TTL; None for a lease taken by an older orch); both None when not running."""
    beating = job.status == "running" and job.heartbeat_at is not None
    return {"heartbeat_age_s": round(now - job.heartbeat_at, 1) if beating and job.heartbeat_at else None,
            "lease_s": job.lease_ttl if beating else None}


def job_detail(job: Job, shards: ShardCount | None, *, now: float) -> dict[str, Any]:
    """`now`: the database's time (shared/store/clock.py), the clock heartbeats are written by: the
    CLI's own may differ from it by minutes on a lab's machine."""
    epochs = [{"epoch": e.epoch, "train_loss": e.train_loss, "val_loss": e.val_loss, "val_acc": e.val_acc,
               "images_per_s": e.images_per_s, "seconds": e.seconds, "attempt": e.attempt} for e in job.epochs]
    times = {k: (v.isoformat() if v else None) for k, v in
             (("created_at", job.created_at), ("started_at", job.started_at), ("finished_at", job.finished_at))}
    spec = typed_spec(job)
    last = (job.epochs[-1].epoch, job.epochs[-1].val_acc) if job.epochs else None
    name = job.study.name if job.study is not None else None
    from orchestrator.progress import inside_epoch  # here: `orch --help` loads this module, and progress the store

    inside = inside_epoch(job.progress, last[0] if last else None) if job.status == "running" else None
    if inside and job.progress and isinstance(job.progress.get("at"), int | float):
        # stamped by the database's clock, as `now` is: a stopped or hung process went on showing
        # "epoch 2: 30%" with a live heartbeat (the worker beats, not the job)
        idle = now - job.progress["at"]
        if idle > STEP_QUIET_S:
            inside += f"; its last step {_duration(idle)} ago"
    return {**job_summary(job, spec, last, shards, name), "spec": spec.model_dump(mode="json"), "spec_hash": job.spec_hash, "parent_id": job.parent_id,
            "progress": {**(job.progress or {}), "said": inside} if inside else None,
            "source_job_id": job.source_job_id, "model_info": job.model_info, "result": job.result,
            **times, **liveness(job, now), "epochs": epochs, **({"assembly": job.assembly} if job.assembly else {})}


@click.command()
@click.argument("job_id", type=int, required=False)
@click.option("--limit", default=30, show_default=True, help="How many recent jobs to list; 0: all.")
@click.option("--study", "study_ref", metavar="ID|NAME", help="Only this study's jobs.")
@click.option("--state", "state_list", metavar="STATE[,STATE]",
              help=f"Only jobs in these states: {', '.join(STATES)}.")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: a list of jobs (or JOB_ID's, with its spec, epochs and events), each with its "
                   "status: queued, running, succeeded, failed or cancelled.")
@pass_state
def status(obj: CliState, job_id: int | None, limit: int, study_ref: str | None, state_list: str | None,
           as_json: bool) -> None:
    """Show recent jobs, or one job with its spec and per-epoch metrics.

    \b
    Examples:
      orch status            # the 30 most recent jobs
      orch status 7          # job 7: spec, epochs, error
      orch status 7 --json
      orch status --study groups   # one study's jobs, by name or id
      orch status --state failed,cancelled --limit 0   # every job `orch retry` would requeue
    """
    from orchestrator.studies import study_for
    from shared.store import reads
    from shared.store.clock import read_now

    if limit < 0:  # as `orch report --limit`
        raise OrchError(f"--limit: must be 0 (all) or more, got {limit}")
    for option, given in (("--study S", study_ref), ("--state STATE", state_list)):
        if job_id is not None and given is not None:  # it was ignored: job 1 shown as if in the study
            raise OrchError(f"{option.split()[0]}: give a job ID or {option}, not both (it selects from the list)")
    states = parse_states(state_list)
    from shared.store.scoring_runs import shard_progress

    with obj.store.session() as s:
        if job_id is None:
            study_id = study_for(s, study_ref).id if study_ref is not None else None
            jobs = reads.recent_jobs(s, limit, study_id, states)
            total = reads.count_jobs(s, study_id, states) if limit and len(jobs) == limit else len(jobs)
            shards = shard_progress(s, [job.id for job in jobs if job.kind == "score"])
            # one query for every row's last epoch: job.epochs here cost a query per row (30 round trips)
            last = reads.last_epochs(s, [job.id for job in jobs])
            names = reads.study_names(s, [job.study_id for job in jobs])
            now = read_now(s)
            rows = [{**job_summary(job, typed_spec(job), last.get(job.id), shards.get(job.id),
                                   names.get(job.study_id) if job.study_id is not None else None),
                     **liveness(job, now)} for job in jobs]
        else:
            job = reads.job(s, job_id)
            if job is None:
                raise OrchError(f"JOB_ID: no job {job_id}")
            detail = job_detail(job, shard_progress(s, [job.id]).get(job.id), now=read_now(s))
            detail["events"] = [{"at": e.at.isoformat(), "kind": e.kind, "message": e.message}
                                for e in reads.job_events(s, job.id)]
    if job_id is None:
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        elif rows:
            print_table([table_row(row, obj.settings.lease_ttl) for row in for_display(without_defaults(rows))], title="jobs",
                        drop_first=("worker", "attempts", "kind", "lr", "study", "seed"))
            for note in (silent_note(rows, obj.settings.lease_ttl, obj.settings.max_attempts), unread_note(obj, rows)):
                if note:
                    click.echo(note)
        elif states or study_ref is not None:
            click.echo(f"no {state_words(states)}jobs{' in this study' if study_ref is not None else ''}")
        else:
            click.echo("no jobs yet: orch submit train --help")
        if total > len(rows):  # on stderr, JSON or not: a study's 36 jobs listed 30, with nothing said
            click.echo(cut_note(len(rows), total, of_study=study_ref is not None, states=states), err=True)
        return
    if as_json:
        click.echo(json.dumps(detail, indent=2))
        return
    print_detail(detail, obj.settings.lease_ttl, obj.settings.max_attempts)


def cut_note(shown: int, total: int, of_study: bool, states: list[str] | None = None) -> str:
    """The listing's --limit left jobs out (as `orch report` says of its leaderboard)."""
    whose = "the study's " if of_study else ""
    return f"the newest {shown} of {whose}{total} {state_words(states or [])}jobs: --limit 0 shows all"


def state_words(states: list[str]) -> str:
    """'failed or running ' before 'jobs' in what the listing says; '' for a listing of every state."""
    return f"{' or '.join(states)} " if states else ""


def parse_states(given: str | None) -> list[str]:
    """--state's comma-separated states, each one of STATES."""
    if given is None:
        return []
    states = [part.strip() for part in given.split(",")]
    for state in states:
        if state not in STATES:
            raise OrchError(f"--state: unknown state {state!r}; give one or more of {', '.join(STATES)} "
                            "(comma-separated)")
    return list(dict.fromkeys(states))


def print_detail(detail: dict[str, Any], lease_ttl: float, max_attempts: int) -> None:
    named = {"study": f"{detail['study']} ({detail['study_name']})"} if detail.get("study_name") else {}
    for key in ("id", "kind", "status", "study", "attempts", "worker", "queue", "created_at", "started_at",
                "finished_at", "error"):
        if detail.get(key) not in (None, "") and (key != "queue" or detail[key] != DEFAULT_QUEUE):
            click.echo(f"{key:>12}: {named.get(key, detail[key])}")
    wall, elapsed = wall_seconds(detail), _first_start_to_end(detail)
    if wall is not None:
        # a shard taken over scores again from its start: its own count is the last attempt's (22.5 s of 77)
        span = (f" ({_seconds(elapsed)} from its first start to its end, over {detail.get('attempts')} attempts)"
                if elapsed is not None and elapsed > 1.1 * wall + 1 and (detail.get("attempts") or 0) > 1 else "")
        click.echo(f"{'wall time':>12}: {_seconds(wall)}{span}")
    if detail.get("shards"):
        shards = detail["shards"]
        click.echo(f"{'shards':>12}: {shards['succeeded']} of {shards['total']} succeeded, {shards['running']} running")
    if detail.get("progress"):
        click.echo(f"{'progress':>12}: {detail['progress']['said']}")
    if detail.get("heartbeat_age_s") is not None:
        last = is_last_attempt(detail, max_attempts)
        line = heartbeat_line(detail["heartbeat_age_s"], lease_s(detail, lease_ttl), last,
                              cancelling=bool(detail.get("cancel_requested")))
        click.echo(f"{'heartbeat':>12}: {line}")
    click.echo(f"{'spec':>12}: {json.dumps(detail['spec'], sort_keys=True)}")
    if detail["model_info"]:
        click.echo(f"{'model':>12}: {json.dumps(detail['model_info'])}")
    if detail["result"]:
        click.echo(f"{'result':>12}: {json.dumps(readable_result(detail['result']))}")
        ran = precision_line(detail["spec"], detail["result"])
        if ran:
            click.echo(f"{'precision':>12}: {ran}")
        stages = stage_line(detail["result"])
        if stages:
            click.echo(f"{'stages':>12}: {stages}")
    if detail["epochs"]:
        print_table(for_display(detail["epochs"]), title="epochs")
    for event in detail.get("events", []):
        first, *more = event["message"].splitlines() or [""]  # a traceback's lines, indented under its own
        click.echo(f"{event['at'][:19]} {event['kind']}: {first}" + "".join(f"\n    {line}" for line in more))


def wall_seconds(detail: dict[str, Any]) -> float | None:
    """An ended job's wall time: a training job's own count (which keeps the epochs a resumed attempt
    did not run again), else its first start to its end; None while it runs. It was only a number
    inside the result's JSON line."""
    wall = (detail.get("result") or {}).get("wall_s")
    return float(wall) if isinstance(wall, int | float) else _first_start_to_end(detail)


def _first_start_to_end(detail: dict[str, Any]) -> float | None:
    from datetime import datetime

    if detail.get("started_at") and detail.get("finished_at"):
        return (datetime.fromisoformat(detail["finished_at"]) - datetime.fromisoformat(detail["started_at"])).total_seconds()
    return None


def _seconds(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else _duration(seconds)


# result key -> {its stage: the name shown}, in order: a job's start-up, then a scoring shard's own stages
STAGES = {"startup": {"take_s": "take", "store_s": "store", "data_s": "data", "probe_s": "bf16 probe", "build_s": "build",
                      "first_step_s": "first step"},
          "timings": {"load_s": "load", "decode_s": "decode", "int8_s": "int8", "verify_s": "verify",
                      "infer_s": "inference"}}


def readable_result(result: dict[str, Any]) -> dict[str, Any]:
    """The result as a person reads it: a scoring shard's hits are one bit per image in base64 (kB of
    noise on the line; `--json` keeps them)."""
    return {k: (f"<{result.get('n', '?')} images, 1 bit each>" if k == "hits" else v)
            for k, v in result.items() if k != "truth_sum"}


def stage_line(result: dict[str, Any]) -> str:
    """Where a job's time went, in seconds, from the numbers its result JSON holds: a training job's
    start-up to its first step, a scoring shard's start-up and stages; "" for a job without them."""
    laps = {name: result[key][stage] for key, names in STAGES.items() if isinstance(result.get(key), dict)
            for stage, name in names.items() if isinstance(result[key].get(stage), int | float)}
    if not laps:
        return ""
    text = ", ".join(f"{name} {seconds:.2f}" for name, seconds in laps.items())
    startup = result.get("startup") or {}
    waited = startup.get("wait_ready_s") or 0
    process = ("a job process started for it" if not startup.get("warm") else
               f"a warm job process, ready {waited:.2f} s after the job was taken" if waited >= 0.01 else
               "a warm job process")
    to = " to the first step" if "first step" in laps else ""
    return f"{sum(laps.values()):.2f} s{to} ({text}; {process})"


def precision_line(spec: dict[str, Any], result: dict[str, Any]) -> str:
    """What a finished job ran in and why, from its spec (what was asked) and its result (what ran; the
    bf16 probe's measure where `auto` chose by it); "" where the result does not say. Only a
    machine's first job writes the probe's finding into its history: the jobs after it read the
    answer kept for the machine, and said nothing of why they ran in bf16."""
    ran = result.get("precision")
    if not ran:
        return ""
    asked = spec.get("precision", "auto")
    fallback = f"; {result['int8_fallback']}" if result.get("int8_fallback") else ""  # int8 failed its check
    agreement = result.get("int8_agreement")
    if "int8" in str(ran).split(",") and isinstance(agreement, int | float):  # int8 passed its check: say so
        fallback += f"; int8 agreed with fp32 on {agreement:.1%} of the calibration images"
    if asked != "auto":
        return f"{ran} (--precision {asked}{'' if ran == asked else ' asked for'}{fallback})"
    speedup = result.get("bf16_speedup")
    if isinstance(speedup, int | float):
        return f"{ran} (auto: bf16 steps ran {speedup:.2f}x as fast as fp32 in this machine's probe)"
    return f"{ran} (auto{fallback.replace('; ', ': ', 1)})"
