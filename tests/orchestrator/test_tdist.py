"""The pure-Python t and noncentral t against scipy.special (which the report no longer imports).

Tolerances: t_cdf and t_quantile to 1e-9 relative, tails included (they reach 2e-13 and 4e-15). nct_cdf
to 1e-12 absolute everywhere (it reaches 1e-14: a power is a difference of two of these probabilities)
and to 1e-9 relative where x >= 0 and the value is above 1e-30. Not below: for x < 0 the reflection
1 - F(-x; -nc) leaves ~1e-16 absolute, and further out scipy's own nctdtr is off (at df=999, nc=40,
x=3 it gives 7.4e-108 where the integral is 1.27e-298). Where nctdtr gives NaN (scipy 1.17, 52 of the
grid's 2392 points, all far tails), the reference is the CDF as one integral, by scipy.integrate.quad.
"""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import scipy.integrate as integrate  # a test dependency (pyproject's test extra): the reference
import scipy.special as sc

from orchestrator.analysis.stats import paired_power
from orchestrator.analysis.tdist import nct_cdf, t_cdf, t_quantile
from tests.conftest import REPO

DFS = (1, 2, 3, 5, 10, 30, 100, 999)
XS = (-50.0, -20.0, -10.0, -5.0, -3.0, -2.0, -1.5, -1.0, -0.5, -0.1, -1e-3, 0.0,
      1e-3, 0.1, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0)
PS = (1e-10, 0.001, 0.025, 0.5, 0.975, 0.999)
NCS = (0.0, 0.1, 1.0, 3.0, 10.0, 40.0, 300.0)


def reference_nct(df: int, nc: float, x: float) -> float:
    value = float(sc.nctdtr(df, nc, x))
    if not math.isnan(value):
        return value
    # F = E[Phi(x S - nc)] over S = sqrt(chi2_df / df), whose density peaks at 1 with sd ~ 1/sqrt(2 df)
    log_c = math.log(2) + df / 2 * math.log(df / 2) - math.lgamma(df / 2)

    def integrand(s: float) -> float:
        return math.exp(log_c + (df - 1) * math.log(s) - df * s * s / 2) * float(sc.ndtr(x * s - nc)) if s else 0.0

    wide = 1 + 8 / math.sqrt(2 * df)
    near = integrate.quad(integrand, 0, wide + 1, points=[max(2 - wide, 0), 1, wide], limit=500, epsabs=1e-15)
    return float(near[0] + integrate.quad(integrand, wide + 1, math.inf, epsabs=1e-15)[0])


@pytest.mark.parametrize("df", DFS)
def test_t_cdf(df: int) -> None:
    for x in XS:
        ref = float(sc.stdtr(df, x))
        assert abs(t_cdf(df, x) - ref) <= 1e-9 * ref, (df, x)


@pytest.mark.parametrize("df", DFS)
def test_t_quantile(df: int) -> None:
    for p in PS:
        ref = float(sc.stdtrit(df, p))
        assert abs(t_quantile(df, p) - ref) <= 1e-9 * abs(ref), (df, p)
    assert t_quantile(df, 0.5) == 0.0 and t_quantile(df, 0.0) == -math.inf and t_quantile(df, 1.0) == math.inf


@pytest.mark.parametrize("df", DFS)
def test_nct_cdf(df: int) -> None:
    for nc in NCS + tuple(-nc for nc in NCS if nc):
        for x in XS:
            ours, ref = nct_cdf(df, nc, x), reference_nct(df, nc, x)
            assert abs(ours - ref) <= 1e-12, (df, nc, x, ours, ref)
            if x >= 0 and ref > 1e-30:
                assert abs(ours - ref) <= 1e-9 * ref, (df, nc, x, ours, ref)
    assert nct_cdf(df, 0.0, 1.7) == pytest.approx(t_cdf(df, 1.7), rel=1e-14)  # nc = 0 is Student's t


def test_power_over_the_range_the_report_uses() -> None:
    # n up to MAX_SEEDS (1000) and shifts effect * sqrt(n) up to ~3000, far past where AS 243's sum from
    # j = 0 underflows (nc ~ 38)
    for effect in (1e-6, 1e-3, 0.05, 0.2, 0.5, 1.0, 3.0, 10.0, 100.0):
        for n in (2, 3, 5, 10, 34, 100, 500, 1000):
            df, shift = n - 1, effect * math.sqrt(n)
            critical = float(sc.stdtrit(df, 0.975))
            ref = 1 - reference_nct(df, shift, critical) + reference_nct(df, shift, -critical)
            assert abs(paired_power(effect, n) - ref) <= 1e-9, (effect, n)


def test_the_report_statistics_import_no_scipy() -> None:
    code = ("import sys; from orchestrator.analysis import stats; "
            "stats.summarize([0.5, 0.6, 0.7]); stats.seeds_for_power(0.5); "
            "assert 'scipy' not in sys.modules, sorted(m for m in sys.modules if m.startswith('scipy'))[:5]")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
