"""Statistics over seeds: a config's 95% interval, and a paired comparison against a baseline.

Pairing by seed removes what two configs share on one seed (the same initial weights draw, the
same data order), so the differences' spread, not each config's, decides. The t distribution and
the noncentral t (for power) come from orchestrator.analysis.tdist, in pure Python: importing
scipy.special for them cost 0.4-0.5 s of a 1 s `orch report --study`.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from orchestrator.analysis import tdist

if TYPE_CHECKING:
    from orchestrator.analysis.image_error import ImageError

LEVEL = 0.95  # the intervals' confidence
ALPHA = 0.05  # a two-sided paired t-test's threshold for "better" or "worse"
POWER = 0.80  # the power the seed-count estimate aims for
MAX_SEEDS = 1000  # a difference that would need more seeds is reported as "more than" this
# A spread this small is rounding, not variation: 0.9 - 0.8 and 0.8 - 0.7 differ in the 17th digit,
# and dividing by that spread would call an identical gain on every seed "p = 1e-16".
ROUNDING = 1e-12
def sign_seeds(alpha: float = 0.05) -> int:
    """The fewest seeds whose differences, all of one sign, pass the two-sided sign test at `alpha`
    (6 at 5%; 7 at 5% / 2, Holm's first step with two comparisons)."""
    return next(n for n in range(1, 64) if 2 * 0.5 ** n < alpha)


def fixed(value: float, digits: int, sign: bool = False) -> str:
    """`value` with `digits` decimals, or in 4 significant digits past 100,000: a diverged run's
    val_loss read 3694007418.8800 ± 269889692.8690."""
    if abs(value) >= 1e5:
        return f"{value:+.4g}" if sign else f"{value:.4g}"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


@dataclass(frozen=True)
class Scale:
    """How a metric's differences read: accuracy in percentage points, a loss as it is."""

    factor: float
    unit: str
    higher_is_better: bool
    bounds: tuple[float, float] | None = None  # the metric's possible range (accuracy 0 to 1; a loss 0 up)

    def clip(self, low: float, high: float, difference: bool = False) -> tuple[float, float]:
        """An interval cut to what the metric (or a difference of two) can be; cutting a 95% interval
        to the parameter's range keeps its coverage."""
        if self.bounds is None:
            return low, high
        span = self.bounds[1] - self.bounds[0]  # inf for a metric bounded below only: no difference is cut
        floor, ceiling = (-span, span) if difference else self.bounds
        return max(low, floor), min(high, ceiling)

    @property
    def cut_note(self) -> str:
        """What a config's interval cut to the bounds says."""
        if self.bounds is not None and math.isinf(self.bounds[1]):
            return f"the 95% interval is cut at {self.bounds[0]:g}, below which the metric cannot go"
        return CUT

    def delta(self, value: float) -> str:
        return f"{fixed(self.factor * value, 2, sign=True)}{self.unit}"

    def interval(self, low: float, high: float) -> str:
        return f"[{fixed(self.factor * low, 2, sign=True)}, {fixed(self.factor * high, 2, sign=True)}]{self.unit}"

    def magnitude(self, value: float) -> str:
        return f"{fixed(self.factor * abs(value), 2)}{self.unit}"


@dataclass(frozen=True)
class Summary:
    """A config's metric over its seeds: mean, sample std and the t interval (None when n < 2)."""

    n: int
    mean: float | None
    std: float | None
    ci: tuple[float, float] | None
    note: str


@dataclass(frozen=True)
class Comparison:
    """A config against the baseline, paired over the seeds both have."""

    seeds: list[int]
    diff: float | None  # mean of (config - baseline) over the common seeds
    ci: tuple[float, float] | None
    p: float | None
    seeds_needed: int | None  # for 80% power at the observed difference; None: not estimable
    outcome: str  # baseline | better | worse | no difference | unclear | not paired
    verdict: str
    p_adjusted: float | None = None  # Holm's, over the study's comparisons (None: one comparison, or no p)
    beyond_max: bool = False  # seeds_needed is None because more than MAX_SEEDS would be needed
    images: int | None = None  # the images whose sampling error p and the interval count
    images_of: str = "validation"  # which: "validation", or "test" (test_acc)
    p_seeds: float | None = None  # with `images`: the p-value over the seeds alone
    too_few_images: bool = False  # seeds_needed is None because no number of seeds would do on these images

    @property
    def seeds_cell(self) -> int | str:
        """The seed count as the verdict says it: "more than 1000" was an empty cell beside those words."""
        if self.too_few_images:
            return f"none: too few {self.images_of} images"
        return f"more than {MAX_SEEDS}" if self.beyond_max else self.seeds_needed or ""


def t_quantile(df: int) -> float:
    return tdist.t_quantile(df, 0.5 + LEVEL / 2)


def summarize(values: list[float], scale: Scale | None = None) -> Summary:
    n = len(values)
    if n == 0:
        return Summary(0, None, None, None, "no value recorded")
    mean = statistics.fmean(values)
    if n == 1:
        return Summary(1, mean, None, None, "n=1: no interval from one seed")
    std = _spread(values)
    half = t_quantile(n - 1) * std / math.sqrt(n)
    note = "zero variance: every seed gave the same value" if std == 0 else ""
    ci = scale.clip(mean - half, mean + half) if scale else (mean - half, mean + half)
    if ci != (mean - half, mean + half):  # said, or it reads as an interval that really ends there
        note = note or (scale.cut_note if scale else CUT)
    return Summary(n, mean, std, ci, note)


CUT = "the 95% interval is cut at what the metric can be (0 to 100%)"


def compare(values: dict[int, float], baseline: dict[int, float], scale: Scale,
            adjusted: Adjusted | None = None, tests: int = 1, images: ImageError | None = None) -> Comparison:
    """Paired over the seeds both configs have; a seed only one of them has is left out. With
    `adjusted` (holm: one of several comparisons against the baseline), its p decides the verdict.
    `tests`: the comparisons the study makes (paired on 2 seeds or more), which a seed count to aim
    for plans with: one of identical seeds has no p-value today, and will have one with more seeds.
    `images`: the same seeds' per-image hits on the validation (or test) set, whose sampling error the p-value
    and interval then count too (the larger of the two analyses': counting it never makes a claim bolder)."""
    seeds = sorted(set(values) & set(baseline))
    diffs = [values[s] - baseline[s] for s in seeds]
    n = len(diffs)
    if n == 0:
        why = ("no value recorded" if not values else "the baseline has no value of this metric" if not baseline
               else "no seed in common with the baseline")
        return Comparison([], None, None, None, None, "not paired", f"not compared: {why}")
    mean = statistics.fmean(diffs)
    if n == 1:
        return Comparison(seeds, mean, None, None, None, "unclear",
                          f"{scale.delta(mean)} on the one common seed ({seeds[0]}): no interval or p-value "
                          f"from one seed; run at least 2")
    sd = _spread(diffs)
    images = images if images is not None and images.seeds == n else None
    if sd == 0:
        return _without_spread(seeds, mean, scale, adjusted, tests, images)
    return _paired_t(seeds, mean, sd, scale, adjusted, tests, images)


@dataclass(frozen=True)
class Adjusted:
    """A comparison's p-value adjusted for the others made against the same baseline."""

    p: float
    family: int  # how many comparisons have a p-value

    @property
    def said(self) -> str:
        return f"Holm-adjusted over {self.family} comparisons p={self.p:.2g}"


def holm(p_values: list[float | None]) -> list[Adjusted | None]:
    """Holm's step-down adjustment: with k configs against one baseline, k-1 tests at 5% each would say
    "better" or "worse" of some config in a study where none differs, far more often than 5% of the
    time (3 configs: up to 10%; 6: up to 23%). Holm keeps that chance at 5% for the whole study, and is
    uniformly more powerful than Bonferroni. None where there is no p-value, or only one."""
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(present)
    adjusted: list[Adjusted | None] = [None] * len(p_values)
    if m < 2:
        return adjusted
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))  # never below a smaller p's adjusted value
        adjusted[i] = Adjusted(running, m)
    return adjusted


def single_difference(value: float | None, baseline: float | None, scale: Scale) -> Comparison:
    """Two single jobs (`orch report --job`): their difference, nothing more. Pairing them by seed
    compared a resnet18 with a mobilenet "on the one common seed", and left out a job of another seed."""
    if value is None or baseline is None:
        return Comparison([], None, None, None, None, "not paired",
                          f"not compared: {'no value recorded' if value is None else 'the baseline has none'}")
    diff = value - baseline
    return Comparison([], diff, None, None, None, "unclear", f"{scale.delta(diff)}: one run each, no interval or "
                                                             "p-value (a study's seeds give them)")


def _spread(values: list[float]) -> float:
    """The sample standard deviation, 0 when it is only floating-point rounding."""
    sd = statistics.stdev(values)
    return 0.0 if sd <= ROUNDING * max(1.0, max(abs(v) for v in values)) else sd


def _planned(adjusted: Adjusted | None, tests: int) -> int:
    """How many comparisons a larger run of the study would adjust together."""
    return max(adjusted.family if adjusted is not None else 1, tests)


def _without_spread(seeds: list[int], mean: float, scale: Scale, adjusted: Adjusted | None, tests: int,
                    images: ImageError | None = None) -> Comparison:
    """Every seed gave the same difference: the t statistic is undefined (0/0) or infinite."""
    n = len(seeds)
    if mean == 0:
        return Comparison(seeds, 0.0, (0.0, 0.0), None, None, "no difference",
                          # identical seeds (two at chance, say) show no difference; they prove no equality
                          f"no detectable difference: identical on all {n} seeds (zero variance: no p-value)")
    # No t-test without spread, and no certainty either: accuracy on 100 images moves in whole points,
    # so two seeds differing by the same point is common. What one can say is that every seed went
    # the same way: the two-sided sign test, p = 2 x 0.5^n (2 seeds 0.5; 6 seeds 0.031).
    sign_p = min(1.0, 2 * 0.5 ** n)
    p = sign_p if images is None else max(sign_p, images.p)
    decides = p if adjusted is None else adjusted.p
    counted = "" if images is None or images.p <= sign_p else f"; {_counting(images)} p={images.p:.2g}"
    same = (f"{scale.delta(mean)} on every one of {n} seeds (zero spread: no t interval; sign test p={sign_p:.2g}"
            f"{counted}{_said(adjusted)})")
    if decides < ALPHA:
        word = _direction(mean, scale)
        return _noted(Comparison(seeds, mean, None, p, None, word, f"{word}: {same}", _p(adjusted)), images, sign_p)
    family = _planned(adjusted, tests)
    too_few = images is not None and images.blocked(mean, ALPHA / family)
    if images is not None and too_few:
        more = f"; {_too_few_images(images, mean, scale, family)}"
    else:
        more = "" if p < ALPHA / family else f"; the same sign on {sign_seeds(ALPHA / family)} seeds would be one"
    return _noted(Comparison(seeds, mean, None, p, None, "unclear",
                             f"no detectable difference with n={n} seeds ({same}){more}", _p(adjusted)),
                  images, sign_p, too_few)


def _counting(images: ImageError) -> str:
    return f"counting the sampling error of the {images.images} {images.kind} images"


def _noted(comparison: Comparison, images: ImageError | None, p_seeds: float, too_few: bool = False) -> Comparison:
    """The comparison with what counting the images added (nothing without them)."""
    if images is None:
        return comparison
    return replace(comparison, images=images.images, images_of=images.kind, p_seeds=p_seeds, too_few_images=too_few)


def _too_few_images(images: ImageError, mean: float, scale: Scale, family: int) -> str:
    among = f" among {family} comparisons" if family > 1 else ""
    return (f"no number of seeds would detect {scale.magnitude(mean)} at 80% power{among} on these {images.images} "
            f"{images.kind} images (their own sampling error of the difference is ±{scale.magnitude(images.floor_half_width())}"
            f"); more {images.kind} images would")


def _said(adjusted: Adjusted | None) -> str:
    return "" if adjusted is None else f", {adjusted.said}"


def _p(adjusted: Adjusted | None) -> float | None:
    return None if adjusted is None else adjusted.p


def _paired_t(seeds: list[int], mean: float, sd: float, scale: Scale, adjusted: Adjusted | None, tests: int,
              images: ImageError | None = None) -> Comparison:
    n = len(seeds)
    se = sd / math.sqrt(n)
    t = mean / se
    p_seeds = 2 * tdist.t_cdf(n - 1, -abs(t))  # two-sided: twice the t distribution's upper tail
    half_seeds = t_quantile(n - 1) * se
    p = p_seeds if images is None else max(p_seeds, images.p)
    half = half_seeds if images is None else max(half_seeds, images.half_width())
    ci = scale.clip(mean - half, mean + half, difference=True)
    family = _planned(adjusted, tests)
    needed = seeds_for_power(abs(mean) / sd, ALPHA / family)  # Holm's first step tests at 5% / family
    too_few = images is not None and images.blocked(mean, ALPHA / family)
    if too_few:
        needed = None
    elif images is not None and needed is not None:
        more = images.seeds_needed(mean, ALPHA / family, MAX_SEEDS)
        needed = None if more is None else max(needed, more)
    beyond = needed is None and mean != 0 and not too_few  # what _seeds_phrase calls "more than 1000"
    cut = " (cut at the largest difference possible)" if ci != (mean - half, mean + half) else ""
    # said where the images widened the interval or raised p: the numbers shown are not the t-test's
    counted = "" if images is None or (images.p <= p_seeds and half == half_seeds) else f" {_counting(images)}"
    alone = "" if not counted else f" (over the seeds alone p={p_seeds:.2g})"
    shown = f"{scale.delta(mean)}, 95% CI {scale.interval(*ci)}{cut}{counted}, p={p:.2g}{alone}{_said(adjusted)}"
    phrase = (_too_few_images(images, mean, scale, family) if images is not None and too_few
              else _seeds_phrase(needed, mean, scale, family))
    if (p if adjusted is None else adjusted.p) < ALPHA:
        word = _direction(mean, scale)
        return _noted(Comparison(seeds, mean, ci, p, needed, word, f"{word}: {shown}, paired over {n} seeds",
                                 _p(adjusted)), images, p_seeds)
    if adjusted is not None and p < ALPHA:  # under 5% alone, not with the others in view: its unadjusted interval may exclude 0
        return _noted(Comparison(seeds, mean, ci, p, needed, "unclear",
                                 f"no detectable difference once the study's {adjusted.family} comparisons are counted "
                                 f"({shown.replace('95% CI', 'unadjusted 95% CI')}, n={n} seeds); {phrase}",
                                 _p(adjusted), beyond), images, p_seeds, too_few)
    return _noted(Comparison(seeds, mean, ci, p, needed, "unclear",
                             f"no detectable difference with n={n} seeds ({shown}); {phrase}", _p(adjusted), beyond),
                  images, p_seeds, too_few)


def _direction(mean: float, scale: Scale) -> str:
    return "better" if (mean > 0) == scale.higher_is_better else "worse"


def _seeds_phrase(needed: int | None, mean: float, scale: Scale, family: int = 1) -> str:
    """A rough figure: the spread it uses is itself estimated from a few seeds."""
    if mean == 0:
        return "the observed mean difference is 0: it gives no seed count to aim for"
    among = f" among {family} comparisons" if family > 1 else ""
    if needed is None:
        return f"more than {MAX_SEEDS} seeds would be needed to detect {scale.magnitude(mean)} at 80% power{among}"
    return f"about {needed} seeds would detect {scale.magnitude(mean)} at 80% power{among}"


def paired_power(effect: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test at level `alpha` with n pairs, for effect = |mean| / sd."""
    df = n - 1
    critical = tdist.t_quantile(df, 1 - alpha / 2)
    shift = effect * math.sqrt(n)
    # P(T > critical) + P(T < -critical) for T noncentral t with this shift
    return 1 - tdist.nct_cdf(df, shift, critical) + tdist.nct_cdf(df, shift, -critical)


def seeds_for_power(effect: float, alpha: float = ALPHA) -> int | None:
    """The fewest seeds (pairs, at least 2) whose paired t-test at `alpha` has POWER at this effect size
    (with several comparisons, alpha / their number: what Holm's first step asks of the smallest p)."""
    if effect <= 0 or paired_power(effect, MAX_SEEDS, alpha) < POWER:
        return None
    low, high = 1, 2  # power grows with n: find an n that reaches it, then bisect
    while paired_power(effect, high, alpha) < POWER:
        low, high = high, min(2 * high, MAX_SEEDS)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if paired_power(effect, middle, alpha) >= POWER else (middle, high)
    return high
