"""The validation images' own sampling error in a paired comparison over seeds.

Every seed of every config is validated on the same images (a --val folder, or the same seeded split
of --data), so whatever those images happen to favour is the same on each seed: the seeds' spread
cannot see it, and more seeds cannot remove it. Two configs that make different mistakes (a
BatchNorm and a LayerNorm net do) then differ on these images by more than they would on others of
the same kind, consistently over seeds. With 200 images and 5 seeds, a paired t-test over the seeds
called such configs "better" or "worse" in 17% of simulated studies where they were equal on the
images' population (28% with 10 seeds); this analysis, 4.2-6.8%.

The same holds for a test set: every seed's best checkpoint is scored on the same test folder.
The worker records which validation images each run got right at its best and its last epoch
(shared/val_hits.py), and a scoring run that is a job's test accuracy which test images it got right
(scores.hits). A comparison's runs, seeds by images, form a two-way crossed design: the
difference of the two configs on seed s and image i, D[s, i] in {-1, 0, 1}, is a seed effect, an
image effect and a residual. The mean difference's variance is sa/n + sb/N + se/(nN) (n seeds, N
images), estimated from the design's mean squares, with Satterthwaite's degrees of freedom.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import TYPE_CHECKING, NamedTuple

from orchestrator.analysis import tdist
from orchestrator.analysis.configs import SEED

if TYPE_CHECKING:
    from orchestrator.analysis.configs import Config
    from shared.store.report_reads import RunRecord

NORMAL = NormalDist()
POWER = 0.80  # the power a seed count aims for, as stats.POWER


@dataclass(frozen=True)
class ImageError:
    """One comparison's seeds-by-images design, reduced to what its verdict needs."""

    images: int  # N: images (the same on every seed)
    seeds: int  # n: seeds paired
    mean: float  # the mean difference (config - baseline), as a fraction
    seed_var: float  # sa: between seeds, beyond what their images explain
    image_var: float  # sb: between images, the same on every seed
    residual: float  # se: seed-by-image
    df: float  # Satterthwaite's, for the mean's t
    kind: str = "validation"  # which images: "validation", or "test" (test_acc's scoring runs)

    def var_with(self, seeds: int) -> float:
        """The mean difference's variance with this many seeds on the same images."""
        return self.seed_var / seeds + self.image_var / self.images + self.residual / (seeds * self.images)

    @property
    def se(self) -> float:
        return math.sqrt(max(self.var_with(self.seeds), 0.0))

    @property
    def p(self) -> float:
        """Two-sided, of a mean difference of 0 on the images' population."""
        if self.se == 0:
            return 1.0 if self.mean == 0 else 0.0
        return min(1.0, 2 * tdist.t_cdf(self.df, -abs(self.mean) / self.se))

    def half_width(self, level: float = 0.95) -> float:
        return tdist.t_quantile(self.df, 0.5 + level / 2) * self.se

    def floor_half_width(self, level: float = 0.95) -> float:
        """What no number of seeds removes: the images' own part of the interval (normal)."""
        return NORMAL.inv_cdf(0.5 + level / 2) * math.sqrt(self.image_var / self.images)

    def seeds_needed(self, effect: float, alpha: float, most: int) -> int | None:
        """The fewest seeds (at least 2) at which a difference of `effect` reaches 80% power at `alpha`
        with these images (normal approximation); None when more than `most`, or none would: the
        images' own error alone is too large (`blocked`)."""
        room = self._room(effect, alpha)
        if effect == 0 or room <= 0:
            return None
        needed = max(2, math.ceil((self.seed_var + self.residual / self.images) / room))
        return needed if needed <= most else None

    def blocked(self, effect: float, alpha: float) -> bool:
        """No number of seeds would detect `effect` on these images at 80% power."""
        return effect != 0 and self._room(effect, alpha) <= 0

    def _room(self, effect: float, alpha: float) -> float:
        """The variance 80% power at `alpha` allows the mean, less the part no number of seeds removes."""
        allowed = (abs(effect) / (NORMAL.inv_cdf(1 - alpha / 2) + NORMAL.inv_cdf(POWER))) ** 2
        return allowed - self.image_var / self.images

def image_error(hits: list[tuple[list[bool], list[bool]]]) -> ImageError | None:
    """From each paired seed's (config's hits, baseline's hits) on the same images; None with fewer
    than 2 seeds or 2 images, or hits of different lengths."""
    n = len(hits)
    if n < 2 or any(len(a) != len(b) or len(a) != len(hits[0][0]) for a, b in hits) or len(hits[0][0]) < 2:
        return None
    import numpy as np  # only a study whose runs recorded their hits reaches here

    diffs = np.array([np.asarray(a, dtype=np.int8) - np.asarray(b, dtype=np.int8) for a, b in hits], dtype=np.float64)
    big_n = diffs.shape[1]
    mean = float(diffs.mean())
    by_seed, by_image = diffs.mean(axis=1), diffs.mean(axis=0)
    ss_seed = big_n * float(((by_seed - mean) ** 2).sum())
    ss_image = n * float(((by_image - mean) ** 2).sum())
    ss_residual = max(float(((diffs - mean) ** 2).sum()) - ss_seed - ss_image, 0.0)
    ms_seed, ms_image = ss_seed / (n - 1), ss_image / (big_n - 1)
    ms_residual = ss_residual / ((n - 1) * (big_n - 1))
    combined = ms_seed + ms_image - ms_residual
    spread = ms_seed ** 2 / (n - 1) + ms_image ** 2 / (big_n - 1) + ms_residual ** 2 / ((n - 1) * (big_n - 1))
    df = max(1.0, combined ** 2 / spread) if spread > 0 and combined > 0 else float(n - 1)
    return ImageError(images=big_n, seeds=n, mean=mean, seed_var=max((ms_seed - ms_residual) / big_n, 0.0),
                      image_var=max((ms_image - ms_residual) / n, 0.0), residual=ms_residual, df=df)


HITS_OF = {"val_acc": "best", "last_val_acc": "last"}  # the metric -> the epoch whose hits it is


def images_kind(metric: str) -> str:
    """Which images a metric's hits are of, as its verdicts name them."""
    return "test" if metric == "test_acc" else "validation"


def paired_hits(config: Config, baseline: Config, metric: str) -> ImageError | None:
    """The two configs' design over the seeds both have, where every one of those runs recorded its
    hits (at the epoch `metric` takes, or in the scoring run that is its test_acc) on one image set;
    None otherwise (another metric, a run from an orch before the hits, two runs of one seed, or
    another image set)."""
    mine, theirs = _hits_by_seed(config, metric), _hits_by_seed(baseline, metric)
    if mine is None or theirs is None:
        return None
    seeds = sorted(set(mine) & set(theirs))
    recorded = [mine[s] for s in seeds] + [theirs[s] for s in seeds]
    if len({(h.set, h.images) for h in recorded}) != 1:
        return None
    from shared.val_hits import unpack

    images = recorded[0].images
    design = image_error([(unpack(mine[s].bits, images), unpack(theirs[s].bits, images)) for s in seeds])
    return None if design is None else replace(design, kind=images_kind(metric))


class Hits(NamedTuple):
    set: str  # the image set's identity: hits of the same set pair image by image
    images: int
    bits: str  # packed (shared/val_hits.py)


def _hits_by_seed(config: Config, metric: str) -> dict[int, Hits] | None:
    """seed -> its run's hits for `metric`; None where a run lacks them or a seed has two runs."""
    found: dict[int, Hits] = {}
    for run in config.runs:
        if metric == "test_acc" and run.test_acc is None:
            continue  # not scored: not in the comparison at all
        seed = int(run.spec.get(SEED, 0))
        hits = _run_hits(run, metric)
        if seed in found or hits is None:
            return None
        found[seed] = hits
    return found


def _run_hits(run: RunRecord, metric: str) -> Hits | None:
    """A validation accuracy's hits at the epoch the report takes (best: the highest val_acc, the
    earliest on a tie; last: the last recorded); test_acc's from its scoring run."""
    if metric == "test_acc":
        scored = run.test_hits
        return Hits(scored["set"], int(scored["images"]), scored["hits"]) if scored else None
    which, recorded = HITS_OF.get(metric), run.val_hits
    if which is None or not recorded or not run.epochs:
        return None
    best = max(run.epochs, key=lambda e: (e["val_acc"], -e["epoch"]))["epoch"]
    if (recorded.get("best_epoch"), recorded.get("last_epoch")) != (best, run.epochs[-1]["epoch"]):
        return None  # recorded for other epochs than the store's (an epoch trained again since)
    return Hits(recorded["set"], int(recorded["images"]), recorded[which])
