"""Student's t and the noncentral t in pure Python (stdlib math only).

The report needs three numbers from these distributions: a quantile (its intervals), a CDF (its
p-values) and a noncentral CDF (its power). scipy.special computes them too, but importing it took
0.4-0.5 s of a 1 s `orch report --study`. All three rest on the regularized incomplete beta function,
computed by its continued fraction (Numerical Recipes' betacf, modified Lentz). Checked against
scipy.special to 1e-9 in tests/orchestrator/test_tdist.py.
"""
from __future__ import annotations

import math

_EPS = 1e-15  # the continued fraction's and the series' stopping point, a few units of the last digit
_TINY = 1e-300  # keeps Lentz's divisions away from 0
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_MAX_TERMS = 1_000_000  # never reached in practice: a failure to converge raises instead of returning noise


def _stirling_rest(x: float) -> float:
    """lgamma(x) less Stirling's (x - 1/2) log x - x + log(2 pi) / 2: small, and known to full precision."""
    if x < 15.0:
        return math.lgamma(x) - (x - 0.5) * math.log(x) + x - _HALF_LOG_2PI
    x2 = 1.0 / (x * x)
    return (1 / 12 - x2 * (1 / 360 - x2 * (1 / 1260 - x2 * (1 / 1680 - x2 / 1188)))) / x


def _beta_front(a: float, b: float, x: float, y: float) -> float:
    """x^a y^b / B(a, b), with y = 1 - x.

    Not as exp(a log x + b log y - lgamma(a) - lgamma(b) + lgamma(a + b)): for a and b in the hundreds
    (the noncentral t's series, df up to 1000) those terms reach thousands and cancel to a few units,
    leaving 1e-12 of rounding. Stirling's formula takes the large parts out exactly (as TOMS 708 does):
      log front = a log(x (a+b) / a) + b log(y (a+b) / b) + log(ab / (a+b)) / 2 - log(2 pi) / 2
                  - rest(a) - rest(b) + rest(a + b),
    where x (a+b) / a = 1 + (bx - ay) / a, which log1p keeps to full precision near 1.
    """
    d = b * x - a * y
    return math.exp(a * _log_ratio(x, a, b, d / a) + b * _log_ratio(y, b, a, -d / b)
                    + 0.5 * math.log(a * b / (a + b))
                    - _HALF_LOG_2PI - _stirling_rest(a) - _stirling_rest(b) + _stirling_rest(a + b))


def _log_ratio(x: float, a: float, b: float, excess: float) -> float:
    """log(x (a+b) / a), where excess = x (a+b) / a - 1 computed without cancellation."""
    if abs(excess) < 0.5:
        return math.log1p(excess)
    return math.log(x) + math.log1p(b / a)  # far from 1: 1 + excess would have lost x's digits


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (Numerical Recipes 6.4); it converges fast for x < (a+1)/(a+b+2)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_TERMS):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),  # the even step, then the odd one
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta: no convergence for a={a}, b={b}, x={x}")


def _betainc(a: float, b: float, x: float, y: float) -> float:
    """The regularized incomplete beta I_x(a, b); y = 1 - x is passed in, computed where it has all its digits."""
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    if x < (a + 1.0) / (a + b + 2.0):
        return _beta_front(a, b, x, y) * _betacf(a, b, x) / a
    return 1.0 - _beta_front(a, b, x, y) * _betacf(b, a, y) / b  # I_x(a, b) = 1 - I_y(b, a)


def t_cdf(df: float, x: float) -> float:
    """P(T <= x) for Student's t with df degrees of freedom."""
    if math.isnan(x):
        return math.nan
    t2 = x * x
    if math.isinf(t2):
        return 0.0 if x < 0 else 1.0
    tail = 0.5 * _betainc(0.5 * df, 0.5, df / (df + t2), t2 / (df + t2))  # P(T > |x|)
    return tail if x < 0 else 1.0 - tail


def _t_log_pdf(df: float, x: float) -> float:
    return (math.lgamma(0.5 * (df + 1)) - math.lgamma(0.5 * df) - 0.5 * math.log(df * math.pi)
            - 0.5 * (df + 1) * math.log1p(x * x / df))


def t_quantile(df: float, p: float) -> float:
    """The x with P(T <= x) = p."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"a probability must be in [0, 1], not {p}")
    if p in (0.0, 1.0):
        return math.copysign(math.inf, p - 0.5)
    if p == 0.5:
        return 0.0
    # Solve for |x| from both the tail q and the distance to the centre c (each exact: p - 1/2 has no
    # rounding for p >= 1/4), so that neither end loses digits to 1 - p or p - 1/2.
    q, c = (p, 0.5 - p) if p < 0.5 else (1.0 - p, p - 0.5)
    size = _quantile_size(df, q, c)
    return -size if p < 0.5 else size


def _quantile_size(df: float, q: float, c: float) -> float:
    """The m > 0 with P(T <= -m) = q, where c = 1/2 - q."""
    if df == 1:  # Cauchy: F(t) = 1/2 + atan(t) / pi
        return math.tan(math.pi * c) if c < 0.25 else 1.0 / math.tan(math.pi * q)
    if df == 2:  # F(t) = 1/2 + t / (2 sqrt(2 + t^2))
        return 2.0 * c / math.sqrt(2.0 * q * (1.0 - q))
    # Newton on s = log m, on log q = log F(-m) in the tail and on log c = log(1/2 - F(-m)) near the
    # centre, each where it has all its digits. Both curves are concave in s (the tail's falls with slope
    # up to -df, the centre's rises with slope down from 1), so Newton converges from any start, after
    # its first step monotonically. The start, for the tail, is a rough normal quantile (Abramowitz &
    # Stegun 26.2.23, to 3e-3) with the Cornish-Fisher correction for df; for the centre, the density at 0.
    tail = c > 0.25
    if tail:
        r = math.sqrt(-2.0 * math.log(q))
        z = r - (2.30753 + 0.27061 * r) / (1.0 + r * (0.99229 + 0.04481 * r))
        s = math.log(z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df * df))
    else:
        s = math.log(c) - _t_log_pdf(df, 0.0)
    target, last = math.log(q if tail else c), math.inf
    for _ in range(100):
        m = math.exp(s)
        y, z = m * m / (df + m * m), df / (df + m * m)
        # P(T < -m) = I_z(df/2, 1/2) / 2 for the tail, P(-m < T < 0) = I_y(1/2, df/2) / 2 for the centre
        value = 0.5 * (_betainc(0.5 * df, 0.5, z, y) if tail else _betainc(0.5, 0.5 * df, y, z))
        slope = math.exp(s + _t_log_pdf(df, m) - math.log(value))  # |d log(value) / ds|; in logs for p ~ 1e-300
        step = (math.log(value) - target) / (-slope if tail else slope)
        # s is log m, so the step is m's relative change. Converging, each step is about the square of
        # the one before; once that stops below 1e-10, the CDF's own rounding is driving the steps.
        if abs(step) < 4 * _EPS or (abs(step) < 1e-10 and abs(step) > 0.5 * abs(last)):
            return m
        s, last = s - step, step
    raise ArithmeticError(f"t quantile: no convergence for df={df}, q={q}")


def nct_cdf(df: float, nc: float, x: float) -> float:
    """P(T <= x) for the noncentral t with df degrees of freedom and noncentrality nc.

    Algorithm AS 243 (Lenth 1989): for x >= 0, with y = x^2 / (x^2 + df) and lam = nc^2 / 2,
      F = Phi(-nc) + 1/2 sum_j [p_j I_y(j + 1/2, df/2) + q_j I_y(j + 1, df/2)],
      p_j = e^-lam lam^j / j!,  q_j = nc e^-lam lam^j / (sqrt(2) Gamma(j + 3/2)).
    The published code sums from j = 0, where e^-lam underflows once nc passes about 38 (and would
    need ~lam terms); here, as Boost does, the sum starts at its largest terms (the Poisson weights' mode,
    or below it for small y) and runs both ways until the terms are negligible, the incomplete betas
    moving by their recurrence I(a + 1) = I(a) - y^a (1-y)^b / (a B(a, b)). Accurate to ~1e-15 absolute;
    for x < 0 the reflection's 1 - F leaves that absolute error, not a relative one, in a small result.
    """
    if math.isnan(x) or math.isnan(nc):
        return math.nan
    if x < 0:
        return 1.0 - nct_cdf(df, -nc, -x)  # T(df, nc) <= x  iff  T(df, -nc) >= -x
    base = 0.5 * math.erfc(nc / math.sqrt(2.0))  # Phi(-nc): the mass of the numerator's normal below 0
    if x == 0:
        return base
    t2 = x * x
    if math.isinf(t2):
        return 1.0
    y, z, b = t2 / (t2 + df), df / (t2 + df), 0.5 * df  # z = 1 - y
    if y == 0.0:  # x below 1e-154: every I_y is 0
        return base
    lam = 0.5 * nc * nc
    # Start at the largest term, or near it: the Poisson mode, unless the incomplete betas fall off
    # faster there (small y): then where the weights' rise, lam / j, meets the betas' fall,
    # y (j + b) / j, i.e. j^2 = lam y (j + b). Starting where the terms underflow would stop at once.
    k = int(min(lam, 0.5 * (lam * y + math.sqrt((lam * y) ** 2 + 4.0 * lam * y * b))))
    p = 0.5 * math.exp(_log_weight(lam, k, k + 1.0))  # the 1/2 in front of the sum folded in
    q = 0.5 * nc / math.sqrt(2.0) * math.exp(_log_weight(lam, k, k + 1.5))
    a = k + 0.5
    i_odd, i_even = _betainc(a, b, y, z), _betainc(a + 0.5, b, y, z)
    g_odd, g_even = _beta_front(a, b, y, z) / a, _beta_front(a + 0.5, b, y, z) / (a + 0.5)  # I(a) - I(a+1)
    total = p * i_odd + q * i_even
    scale = base + p * i_odd + abs(q) * i_even  # the terms' size, for the relative stopping test
    mode_size = scale - base

    # Forward: the subtraction cancels digits as I falls, and when the start is below the Poisson mode
    # the weights that multiply those errors grow; I is recomputed whenever three digits have gone.
    pj, qj, io, ie, go, ge, last, fresh = p, q, i_odd, i_even, g_odd, g_even, mode_size, i_even
    for j in range(k + 1, k + _MAX_TERMS):
        io, ie = io - go, ie - ge
        if ie < 1e-3 * fresh:
            io, ie = _betainc(j + 0.5, b, y, z), _betainc(j + 1.0, b, y, z)
            fresh = ie
        go *= y * (j - 0.5 + b) / (j + 0.5)
        ge *= y * (j + b) / (j + 1.0)
        pj *= lam / j
        qj *= lam / (j + 0.5)
        total += pj * io + qj * ie
        size = pj * io + abs(qj) * ie
        scale += size
        # The terms are unimodal in j (log-concave weights times log-concave I, near enough): once they
        # fall and are negligible against the sum so far, the rest of them are too.
        if size <= last and size <= _EPS * scale:
            break
        last = size
    else:
        raise ArithmeticError(f"noncentral t: no convergence for df={df}, nc={nc}, x={x}")

    # Backward to j = 0: the incomplete betas grow (an addition, stable), the weights fall.
    pj, qj, io, ie, go, ge, last = p, q, i_odd, i_even, g_odd, g_even, mode_size
    for j in range(k, 0, -1):
        go *= (j + 0.5) / (y * (j - 0.5 + b))  # g(a - 1) = g(a) a / (y (a - 1 + b))
        ge *= (j + 1.0) / (y * (j + b))
        io, ie = io + go, ie + ge
        pj *= j / lam
        qj *= (j + 0.5) / lam
        total += pj * io + qj * ie
        size = pj * io + abs(qj) * ie
        scale += size
        if size <= last and size <= _EPS * scale:
            break
        last = size
    return min(max(base + total, 0.0), 1.0)


def _log_weight(lam: float, k: int, m: float) -> float:
    """log(lam^k e^-lam / Gamma(m)) for m = k + 1 or k + 3/2: the series' weights at its start.

    Near the mode, lam, k log lam and lgamma(m) are each up to ~1e7 and cancel, so Stirling's formula
    again takes the large parts out: (m - lam) + k log(lam / m) - (m - k - 1/2) log m - log(2 pi) / 2 - rest(m).
    """
    if k == 0:
        return -lam - math.lgamma(m)
    return ((m - lam) + k * math.log1p((lam - m) / m) - (m - k - 0.5) * math.log(m)
            - _HALF_LOG_2PI - _stirling_rest(m))
