"""Notes under a study's verdicts that qualify its numbers: jobs missing from them, and precisions
that differ between the runs compared (a difference may be the precision's, not the config's)."""
from __future__ import annotations

from orchestrator.analysis.study import StudyAnalysis


def absent_note(absent: list[tuple[int, str]], labels: dict[int, str] | None = None) -> str:
    """The study's jobs that have not finished, (id, how far they got), with their configs where
    known: missing from every number above (a config whose every run failed was simply not there)."""
    labels = labels or {}
    listed = ", ".join(f"{job_id} ({status}{'; ' + labels[job_id] if job_id in labels else ''})"
                       for job_id, status in absent)
    return f"note: not in these statistics, which are over finished runs only: job{'s' if len(absent) > 1 else ''} {listed}"


def ran_precision(analysis: StudyAnalysis) -> str | None:
    """The precision every run of the study trained in; None where they differ (trained_precision_note
    says how) or a run's result does not say (runs from before results recorded it)."""
    ran = {run.result.get("precision") for run in analysis.runs}
    return str(next(iter(ran))) if len(ran) == 1 and None not in ran else None


def precision_shown(analysis: StudyAnalysis) -> str | None:
    """"bf16 (auto)" where --precision auto chose what every run trained in, "fp32" where it was asked
    for; None as ran_precision. Headlines show what ran: "auto" alone hid that the runs trained in bf16."""
    ran = ran_precision(analysis)
    if ran is None:
        return None
    return f"{ran} (auto)" if analysis.common.get("precision", "auto") == "auto" else ran


def trained_precision_note(analysis: StudyAnalysis) -> str | None:
    """Which runs trained in which precision, where not all in one: --precision auto takes bf16 on a
    worker that has it and fp32 on one that has not, and a difference between two configs (or a
    config's spread) may then be the precision's rather than the config's."""
    ran: dict[str, list[str]] = {}
    for result in analysis.results:
        precisions = result.config.precisions()
        for name, seeds in precisions.items():
            which = "" if len(precisions) == 1 else f" seed{'s' if len(seeds) > 1 else ''} {','.join(map(str, seeds))}"
            ran.setdefault(name, []).append(result.config.label + which)
    if len(ran) < 2:
        return None
    listed = "; ".join(f"{name}: {', '.join(labels)}" for name, labels in ran.items())
    return f"not every run trained in one precision ({listed}): a difference may be the precision's"


def scored_precision_note(analysis: StudyAnalysis) -> str | None:
    """Which precision the test accuracies were scored in, where one was int8 or they differ: int8 is a
    quantized copy of the network (kept only where it agreed with fp32 on its check images), so its
    accuracy is near the checkpoint's, not the checkpoint's own."""
    scored: dict[str, list[int]] = {}
    for run in analysis.runs:
        if run.test_acc is not None and run.test_precision:
            scored.setdefault(run.test_precision, []).append(run.id)
    if not scored or (len(scored) == 1 and "int8" not in next(iter(scored))):
        return None
    listed = "; ".join(f"{name} (job{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))})"
                       for name, ids in sorted(scored.items()))
    return (f"test accuracy was scored in {listed}: an int8 score is a quantized copy's, near the checkpoint's "
            f"own; `orch submit score --precision fp32` scores the checkpoint as trained"
            if any("int8" in name for name in scored) else f"test accuracy was scored in {listed}")


def unscored_note(analysis: StudyAnalysis) -> str | None:
    """A study's runs without a test accuracy, by --metric test_acc: missing from its numbers (a config
    of 5 seeds was compared on the 2 scored), and the one command that scores the rest."""
    if analysis.metric != "test_acc" or analysis.study is None:
        return None
    missing = [run.id for run in analysis.runs if run.test_acc is None]
    if not missing:
        return None
    from orchestrator.tables import id_ranges

    study = analysis.study.name or analysis.study.id
    return (f"no test accuracy, so not in these numbers: job{'s' if len(missing) > 1 else ''} {id_ranges(missing)}; "
            f"`orch submit score --study {study} --data TEST_FOLDER --labels LABELS.csv --out preds/` scores the "
            "succeeded ones not scored on that folder yet")
