"""Drift metrics between a baseline feature and the current window: PSI, KS, Jensen–Shannon.

Numeric features are binned on the baseline's deciles (from its statistics.json sketch), so the
baseline and every window share the same bins; categorical features use the baseline's values
plus one bucket for everything else.

* ``psi`` — population stability index ``Σ (q − p) · ln(q / p)`` over the shared bins, with
  empty bins floored at ``EPS`` (p = baseline share, q = current share).
* ``ks_statistic`` — the two-sample Kolmogorov–Smirnov statistic (the largest gap between the
  two empirical CDFs; exact when the baseline sketch holds every value, as up to 2048 do) and
  ``ks_pvalue`` its asymptotic two-sided p-value (Kolmogorov's distribution). Numeric only.
* ``js_distance`` — the Jensen–Shannon distance (base 2, in [0, 1]) over the shared bins,
  as ``scipy.spatial.distance.jensenshannon(p, q, base=2)``.
* ``chi2_pvalue`` — for categorical features, the p-value of Pearson's chi-square test of
  homogeneity between the baseline's category counts and the window's (the 2 × k table of
  the baseline's values plus "other", as ``scipy.stats.chi2_contingency(…, correction=False)``).
  It accounts for both sample sizes, as the KS p-value does for numbers.
* ``distance`` — Model Monitor's baseline-drift distance: the L∞ distance between the two
  distributions (the KS statistic for numbers, the largest change of a category's share for
  strings), compared with ``comparison_threshold`` / ``categorical_comparison_threshold``.

>>> import numpy as np
>>> round(psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])), 6)
0.0
"""

from __future__ import annotations

import math

import numpy as np

from .baseline import FRACTIONAL, INTEGRAL, STRING, Column, sketch_sample

EPS = 1e-4  # floor for empty bins in PSI
DECILES = np.linspace(0.1, 0.9, 9)


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """Quantiles of sorted ``values`` with ``weights`` (inverse of the weighted CDF)."""
    cum = np.cumsum(weights)
    idx = np.searchsorted(cum, qs * cum[-1], side="left")
    return values[np.clip(idx, 0, len(values) - 1)]


def numeric_edges(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Interior bin edges: the baseline's distinct deciles (a value x falls in bin #edges<x)."""
    if len(values) == 0:
        return np.empty(0)
    return np.unique(weighted_quantiles(values, weights, DECILES))


def binned(values: np.ndarray, edges: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Shares of ``values`` in the bins ``(-inf, e0], (e0, e1], …, (e_last, inf)``."""
    idx = np.searchsorted(edges, values, side="left")
    counts = np.bincount(idx, weights=weights, minlength=len(edges) + 1).astype("float64")
    total = counts.sum()
    return counts / total if total else counts


def psi(p: np.ndarray, q: np.ndarray, eps: float = EPS) -> float:
    """Population stability index of current shares ``q`` against baseline shares ``p``."""
    p, q = np.maximum(p, eps), np.maximum(q, eps)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon distance, base 2 (0 = same distribution, 1 = disjoint)."""
    p = p / p.sum() if p.sum() else p
    q = q / q.sum() if q.sum() else q
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return math.sqrt(max((kl(p) + kl(q)) / 2, 0.0))


def ks_statistic(base: np.ndarray, base_weights: np.ndarray, current: np.ndarray) -> float:
    """Largest gap between the weighted baseline ECDF and the current ECDF (both sorted)."""
    if len(base) == 0 or len(current) == 0:
        return 0.0
    grid = np.union1d(base, current)
    cum_b = np.concatenate([[0.0], np.cumsum(base_weights)])
    f_b = cum_b[np.searchsorted(base, grid, side="right")] / cum_b[-1]
    f_c = np.searchsorted(current, grid, side="right") / len(current)
    return float(np.max(np.abs(f_b - f_c)))


def ks_pvalue(d: float, n1: float, n2: float) -> float:
    """Asymptotic two-sided p-value of a KS statistic ``d`` for samples of ``n1`` and ``n2``.

    Kolmogorov's limiting distribution at ``sqrt(n1·n2/(n1+n2))·d`` (scipy's
    ``kstwobign.sf``).
    """
    if n1 <= 0 or n2 <= 0:
        return 1.0
    lam = math.sqrt(n1 * n2 / (n1 + n2)) * d
    if lam < 0.2:
        return 1.0
    k = np.arange(1, 101)
    p = 2.0 * np.sum((-1.0) ** (k - 1) * np.exp(-2.0 * k * k * lam * lam))
    return float(min(max(p, 0.0), 1.0))


def chi2_sf(x: float, df: float) -> float:
    """The chi-square distribution's survival function (scipy's ``chi2.sf(x, df)``): the
    regularized upper incomplete gamma function Q(df/2, x/2), by its series below a + 1 and
    its continued fraction above."""
    a, z = df / 2.0, x / 2.0
    if z <= 0.0 or a <= 0.0:  # x = 0, or a subnormal x whose half is 0: all the mass is above
        return 1.0
    log_front = a * math.log(z) - z - math.lgamma(a)
    if z < a + 1.0:  # P(a, z) by the series Σ z^n / (a (a+1) … (a+n))
        term = total = 1.0 / a
        ap = a
        for _ in range(10_000):
            ap += 1.0
            term *= z / ap
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return float(min(max(1.0 - total * math.exp(log_front), 0.0), 1.0))
    tiny = 1e-300  # Q(a, z) by Lentz's continued fraction
    b = z + 1.0 - a
    c, d = 1.0 / tiny, 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return float(min(max(math.exp(log_front) * h, 0.0), 1.0))


def chi2_homogeneity(base_counts: np.ndarray, current_counts: np.ndarray) -> tuple[float, float]:
    """Pearson's chi-square statistic and p-value for "both rows come from one distribution"
    on the 2 × k table of counts (categories neither row holds are left out; no continuity
    correction). p is 1.0 when a row is empty or fewer than two categories are seen."""
    keep = (base_counts + current_counts) > 0
    b, c = base_counts[keep].astype("float64"), current_counts[keep].astype("float64")
    n_b, n_c = b.sum(), c.sum()
    if n_b <= 0 or n_c <= 0 or len(b) < 2:
        return 0.0, 1.0
    col = b + c
    n = n_b + n_c
    e_b, e_c = n_b * col / n, n_c * col / n
    stat = float(np.sum((b - e_b) ** 2 / e_b) + np.sum((c - e_c) ** 2 / e_c))
    return stat, chi2_sf(stat, len(b) - 1)


def feature_drift(base_feature: dict, col: Column, *, robust_alpha: float = 0.001) -> dict:
    """Drift metrics for one feature: baseline statistics.json entry vs the current column.

    Returns ``psi``, ``ks_statistic``, ``ks_pvalue`` (numbers), ``chi2_pvalue`` (strings),
    ``js_distance``, ``distance`` (Model Monitor's L∞), ``n`` (current values) and
    ``significant`` (for the "Robust" comparison: the feature's p-value, KS or chi-square, is
    below ``robust_alpha``).
    """
    kind = base_feature.get("inferred_type")
    out = {
        "psi": None,
        "ks_statistic": None,
        "ks_pvalue": None,
        "chi2_pvalue": None,
        "js_distance": None,
        "distance": None,
        "n": col.present,
        "significant": True,
    }
    if kind in (INTEGRAL, FRACTIONAL):
        if col.values is None or col.present == 0:
            return out
        base, w = sketch_sample(base_feature)
        if len(base) == 0:
            return out
        cur = np.sort(col.values[np.isfinite(col.values)])
        edges = numeric_edges(base, w)
        p, q = binned(base, edges, w), binned(cur, edges)
        d = ks_statistic(base, w, cur)
        n_base = base_feature["numerical_statistics"]["common"]["num_present"]
        pval = ks_pvalue(d, n_base, len(cur))
        out.update(
            psi=psi(p, q),
            ks_statistic=d,
            ks_pvalue=pval,
            js_distance=js_distance(p, q),
            distance=d,
            significant=pval < robust_alpha,
        )
    elif kind == STRING:
        if col.strings is None or col.present == 0:
            return out
        import pyarrow.compute as pc

        buckets = base_feature["string_statistics"]["distribution"]["categorical"]["buckets"]
        cats = [b["value"] for b in buckets]
        base_counts = np.array([b["count"] for b in buckets] + [0.0])
        base_total = base_feature["string_statistics"]["common"]["num_present"]
        base_counts[-1] = max(
            base_total - base_counts[:-1].sum(), 0.0
        )  # values beyond the top ones
        vc = pc.value_counts(col.strings)
        lookup = dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()))
        cur_counts = np.array([lookup.get(c, 0) for c in cats] + [0.0], dtype="float64")
        cur_counts[-1] = col.present - cur_counts[:-1].sum()
        p, q = base_counts / base_counts.sum(), cur_counts / cur_counts.sum()
        _, pval = chi2_homogeneity(base_counts, cur_counts)
        out.update(
            psi=psi(p, q),
            js_distance=js_distance(p, q),
            distance=float(np.max(np.abs(p - q))),
            chi2_pvalue=pval,
            significant=pval < robust_alpha,
        )
    return out
