"""Statistics over seeds and points, defined once (pure Python + NumPy, no torch).

The dashboard (Studies and Compare pages) and the experiments (`copd reproduce`, `pilot`,
`drift`, grid sweeps) import these, so a table, a chart and a report say the same thing.

    mean_std([0.5, 0.6, 0.7])                  # (0.6, 0.1): sample std, 0 for one value
    fit_line(x, y)                             # least-squares line, Pearson r, p-value
    paired(a, b)                               # mean(a - b) with a 95% CI and a paired
                                               # sign-flip permutation p over the same seeds
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# Two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom (the 95% CI of a
# mean over a handful of seeds); above 30 the Cornish-Fisher expansion below (within 1e-4).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with `df` degrees of freedom (df >= 1)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    # Cornish-Fisher expansion of t around the normal quantile z = 1.959964 (Abramowitz &
    # Stegun 26.7.5): 2.0395 at df 31, 1.9840 at df 100 (the normal 1.960 was ~4% narrow).
    z, v = 1.959963984540054, float(df)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / v + g2 / v**2 + g3 / v**3 + g4 / v**4


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (0 for a single value); (NaN, NaN) for no values."""
    vals = [float(v) for v in values]
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


@dataclass(frozen=True)
class Fit:
    """Least-squares line y = slope * x + intercept, Pearson r, N and a two-sided p-value."""

    slope: float
    intercept: float
    r: float
    n: int
    p_value: float
    p_method: str  # "exact permutation" | "permutation (N draws)" | "n/a"


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of two equal-length sequences; NaN when either is constant."""
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
    n = len(x)
    if n < 2:
        return math.nan
    mx, my = statistics.fmean(x), statistics.fmean(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return math.nan
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def permutation_p(
    x: Sequence[float], y: Sequence[float], draws: int = 20000, seed: int = 0
) -> tuple[float, str]:
    """Two-sided permutation p-value of Pearson r: P(|r(x, perm(y))| >= |r(x, y)|).
    Exact over all permutations for N <= 8, else `draws` random permutations (p counts the
    observed one, so it is never 0)."""
    import numpy as np

    r0 = abs(pearson(x, y))
    if math.isnan(r0):
        return math.nan, "n/a"
    xc = np.asarray(x, dtype=float) - np.mean(x)
    yc = np.asarray(y, dtype=float) - np.mean(y)
    scale = math.sqrt(float(xc @ xc) * float(yc @ yc))
    tol = 1e-9
    if len(yc) <= 8:
        perms = np.array(list(itertools.permutations(range(len(yc)))))
        r = np.abs(yc[perms] @ xc) / scale
        return float(np.mean(r >= r0 - tol)), "exact permutation"
    rng = np.random.default_rng(seed)
    hits, left = 1, draws
    while left > 0:  # batches keep the [batch, N] matrix small
        n = min(left, 1000)
        idx = rng.permuted(np.tile(np.arange(len(yc)), (n, 1)), axis=1)
        hits += int(np.sum(np.abs(yc[idx] @ xc) / scale >= r0 - tol))
        left -= n
    return hits / (draws + 1), f"permutation ({draws} draws)"


def fit_line(x: Sequence[float], y: Sequence[float]) -> Fit:
    """Least-squares line, Pearson r and its permutation p-value (`permutation_p`) for
    points (x_i, y_i), N >= 2."""
    n = len(x)
    if n != len(y):
        raise ValueError(f"x and y differ in length: {n} vs {len(y)}")
    if n < 2:
        return Fit(math.nan, math.nan, math.nan, n, math.nan, "n/a")
    mx, my = statistics.fmean(x), statistics.fmean(y)
    sxx = sum((a - mx) ** 2 for a in x)
    slope = (
        math.nan if sxx == 0 else sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sxx
    )
    intercept = my - slope * mx if not math.isnan(slope) else math.nan
    r = pearson(x, y)
    # The permutation test wherever this runs (exact for N <= 8): the p-value must not
    # depend on whether scipy happens to be installed (it was scipy's t-test where it was).
    p, how = permutation_p(x, y) if n > 2 else (math.nan, "n/a")
    return Fit(slope, intercept, r, n, p, how)


@dataclass(frozen=True)
class Paired:
    """Arm A against arm B over the same seeds: d_i = a_i - b_i."""

    n: int
    mean_a: float
    mean_b: float
    diff: float  # mean of d
    ci_low: float  # 95% confidence interval of mean(d), Student t with n - 1 df
    ci_high: float
    p_value: float  # two-sided paired sign-flip permutation p of mean(d) = 0
    p_method: str  # "exact sign-flip (2^n)" | "sign-flip (N draws)" | "n/a"

    def summary(self, digits: int = 3) -> str:
        if self.n == 0 or math.isnan(self.diff):
            return "no paired seeds"
        return (
            f"diff {self.diff:+.{digits}f} [{self.ci_low:+.{digits}f}, "
            f"{self.ci_high:+.{digits}f}], p={self.p_value:.3g} (n={self.n})"
        )


def paired(a: Sequence[float], b: Sequence[float], draws: int = 20000, seed: int = 0) -> Paired:
    """Paired comparison of two arms run on the same seeds (a[i] and b[i] share seed i).

    The p-value is the paired permutation test: under H0 each difference's sign is
    exchangeable, so p = P(|mean(s * d)| >= |mean(d)|) over sign vectors s; exact over all
    2^n sign vectors for n <= 16, else `draws` random ones (counting the observed, never 0).
    """
    import numpy as np

    if len(a) != len(b):
        raise ValueError(f"paired arms differ in length: {len(a)} vs {len(b)} seeds")
    n = len(a)
    if n == 0:
        nan = math.nan
        return Paired(0, nan, nan, nan, nan, nan, nan, "n/a")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    diff = float(d.mean())
    if n > 1:
        half = t975(n - 1) * float(d.std(ddof=1)) / math.sqrt(n)
        lo, hi = diff - half, diff + half
    else:
        lo = hi = math.nan
    tol = 1e-12
    observed = abs(diff)
    if n == 1 or not np.any(d != 0):
        p, how = (1.0, "exact sign-flip (2^n)") if n > 1 else (math.nan, "n/a")
    elif n <= 16:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        p = float(np.mean(np.abs(signs @ d) / n >= observed - tol))
        how = "exact sign-flip (2^n)"
    else:
        rng = np.random.default_rng(seed)
        signs = rng.choice((1.0, -1.0), size=(draws, n))
        hits = 1 + int(np.sum(np.abs(signs @ d) / n >= observed - tol))
        p, how = hits / (draws + 1), f"sign-flip ({draws} draws)"
    return Paired(n, float(np.mean(a)), float(np.mean(b)), diff, lo, hi, p, how)
