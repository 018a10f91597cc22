"""95% intervals for the numbers a small test split produces, and paired tests between two models.

Why: the bundled ORL test split has 80 images, so one image is 1.25 pp; CPU training is not bit-reproducible
either. A table that ranks stages by their point accuracy ranks noise. Every accuracy therefore gets a
**Wilson score interval** (closed form, good coverage at small n and near 100%, unlike the normal
approximation), macro-F1 a **percentile bootstrap over test images** (it has no closed form: it is a mean of
per-class ratios), and a difference between two models on the *same* test images a **paired** interval:

* `paired_bootstrap` resamples test images (both models' predictions move together), giving an interval for
  the difference in accuracy or macro-F1;
* `mcnemar_exact` is the exact two-sided binomial test on the discordant images (one model right, the other
  wrong), the standard paired test for two classifiers (Dietterich 1998). The pairs both models get right or
  both get wrong say nothing about which is better.

A difference is called *significant* only when its interval excludes 0. Pure numpy (no scipy needed).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from atalaia.evaluate.metrics import classification_metrics

__all__ = [
    "Interval", "PairedDifference", "wilson_interval", "accuracy_interval", "bootstrap_macro_f1",
    "paired_bootstrap", "mcnemar_exact", "compare_models",
]

Z95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclass(frozen=True)
class Interval:
    """A point estimate with its interval and how the interval was computed (written next to every number)."""

    value: float
    low: float
    high: float
    method: str
    level: float = 0.95

    def to_dict(self) -> dict:
        return asdict(self)

    def fmt(self, scale: float = 100.0, digits: int = 1) -> str:
        """'95.0 [89.6, 98.2]' (in percent by default)."""
        s = scale
        return f"{self.value * s:.{digits}f} [{self.low * s:.{digits}f}, {self.high * s:.{digits}f}]"


@dataclass(frozen=True)
class PairedDifference:
    """Difference (model B - model A) on the same test images, its paired interval and McNemar's p-value.

    `significant` is True when the interval excludes 0; `b_only` / `a_only` count the discordant images
    (only B right / only A right) that McNemar's test uses.
    """

    metric: str
    diff: Interval
    p_value: float
    a_only: int
    b_only: int
    n: int

    @property
    def significant(self) -> bool:
        return self.diff.low > 0.0 or self.diff.high < 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["significant"] = self.significant
        return d

    def fmt(self, scale: float = 100.0, digits: int = 2) -> str:
        """'+1.25 pp [-2.50, +5.00], p=0.69 (not significant)'."""
        s = scale
        d = self.diff
        tag = "significant" if self.significant else "not significant"
        return (f"{d.value * s:+.{digits}f} pp [{d.low * s:+.{digits}f}, {d.high * s:+.{digits}f}], "
                f"McNemar p={self.p_value:.3g} ({tag})")


def wilson_interval(successes: int, n: int, level: float = 0.95) -> Interval:
    """Wilson score interval for a binomial proportion (e.g. accuracy = correct / test images).

    Example: 76 correct of 80 -> 0.95 [0.878, 0.980].
    """
    if n <= 0:
        raise ValueError(f"n must be > 0, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {successes}")
    z = _z(level)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at p = 0 or 1 the formula is exact up to rounding; clamp so the point is always inside
    return Interval(p, max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)), "wilson", level)


def accuracy_interval(y_true: np.ndarray, y_pred: np.ndarray, level: float = 0.95) -> Interval:
    """Accuracy of predictions with its Wilson interval."""
    y_true, y_pred = _check_pair(y_true, y_pred)
    return wilson_interval(int(np.sum(y_true == y_pred)), len(y_true), level)


def bootstrap_macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, *, n_boot: int = 2000,
                       seed: int = 0, level: float = 0.95) -> Interval:
    """Macro-F1 with a percentile bootstrap interval over test images (resampled with replacement)."""
    y_true, y_pred = _check_pair(y_true, y_pred)
    value = classification_metrics(y_true, y_pred, num_classes)["macro_f1"]
    idx = _boot_indices(len(y_true), n_boot, seed)
    stats = np.array([_macro_f1(y_true[i], y_pred[i], num_classes) for i in idx])
    lo, hi = _percentiles(stats, level)
    return Interval(value, lo, hi, f"bootstrap over test images (n_boot={n_boot}, percentile)", level)


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray) -> tuple[float, int, int]:
    """Exact two-sided McNemar test. Returns (p-value, a_only, b_only).

    Under H0 (both models equally accurate) each discordant image is a fair coin: p = P(|X - m/2| >= |b - m/2|)
    for X ~ Binomial(m = a_only + b_only, 1/2), i.e. min(1, 2 * P(X <= min(a_only, b_only))).
    """
    a = np.asarray(a_correct, bool)
    b = np.asarray(b_correct, bool)
    if a.shape != b.shape:
        raise ValueError(f"a_correct and b_correct must have the same shape, got {a.shape} and {b.shape}")
    a_only = int(np.sum(a & ~b))
    b_only = int(np.sum(b & ~a))
    m = a_only + b_only
    if m == 0:
        return 1.0, 0, 0
    k = min(a_only, b_only)
    tail = sum(math.comb(m, i) for i in range(k + 1)) / 2.0**m
    return min(1.0, 2.0 * tail), a_only, b_only


def paired_bootstrap(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, *, metric: str = "accuracy",
                     num_classes: int | None = None, n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95) -> PairedDifference:
    """Difference B - A in `metric` ("accuracy" or "macro_f1") on the same test images.

    Each bootstrap replicate draws test images with replacement and scores both models on that same draw, so
    the variation both models share (hard images) cancels out: a paired interval is much tighter than the
    difference of two independent intervals. The p-value is McNemar's exact test (on accuracy, for either
    metric: it tests whether the two models' error rates differ).
    """
    y_true, pred_a = _check_pair(y_true, pred_a)
    _, pred_b = _check_pair(y_true, pred_b)
    if metric == "accuracy":
        def score(t, p):
            return float(np.mean(t == p))
    elif metric == "macro_f1":
        if num_classes is None:
            raise ValueError("metric='macro_f1' needs num_classes")

        def score(t, p):
            return _macro_f1(t, p, num_classes)
    else:
        raise ValueError(f"metric must be 'accuracy' or 'macro_f1', got {metric!r}")
    value = score(y_true, pred_b) - score(y_true, pred_a)
    idx = _boot_indices(len(y_true), n_boot, seed)
    stats = np.array([score(y_true[i], pred_b[i]) - score(y_true[i], pred_a[i]) for i in idx])
    lo, hi = _percentiles(stats, level)
    p, a_only, b_only = mcnemar_exact(pred_a == y_true, pred_b == y_true)
    diff = Interval(value, min(lo, value), max(hi, value),
                    f"paired bootstrap over test images (n_boot={n_boot}, percentile)", level)
    return PairedDifference(metric, diff, p, a_only, b_only, len(y_true))


def compare_models(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, num_classes: int, *,
                   n_boot: int = 2000, seed: int = 0) -> dict:
    """Everything a report row needs for "B vs A" (e.g. distilled vs baseline): both accuracies (Wilson),
    both macro-F1s (bootstrap) and the paired differences in accuracy and macro-F1, as plain dicts."""
    acc_diff = paired_bootstrap(y_true, pred_a, pred_b, metric="accuracy", n_boot=n_boot, seed=seed)
    f1_diff = paired_bootstrap(y_true, pred_a, pred_b, metric="macro_f1", num_classes=num_classes,
                               n_boot=n_boot, seed=seed)
    return {
        "a": {"accuracy": accuracy_interval(y_true, pred_a).to_dict(),
              "macro_f1": bootstrap_macro_f1(y_true, pred_a, num_classes, n_boot=n_boot, seed=seed).to_dict()},
        "b": {"accuracy": accuracy_interval(y_true, pred_b).to_dict(),
              "macro_f1": bootstrap_macro_f1(y_true, pred_b, num_classes, n_boot=n_boot, seed=seed).to_dict()},
        "accuracy_diff": acc_diff.to_dict(),
        "macro_f1_diff": f1_diff.to_dict(),
    }


# ------------------------------------------------------------------------------------------------ helpers
def _z(level: float) -> float:
    if level == 0.95:
        return Z95
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    # inverse normal CDF by bisection on erf (no scipy): plenty accurate for an interval
    target = 0.5 + level / 2.0
    lo, hi = 0.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2.0
        if 0.5 * (1.0 + math.erf(mid / math.sqrt(2.0))) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def _check_pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true).reshape(-1)
    p = np.asarray(y_pred).reshape(-1)
    if t.shape != p.shape or t.size == 0:
        raise ValueError(f"labels and predictions must be non-empty and of equal length ({t.size} vs {p.size})")
    return t, p


def _boot_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    if n_boot < 100:
        raise ValueError(f"n_boot must be >= 100 for a 95% percentile interval, got {n_boot}")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _percentiles(stats: np.ndarray, level: float) -> tuple[float, float]:
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats, [a, 1.0 - a])
    return float(lo), float(hi)


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Macro-F1 over the classes present in y_true (same definition as `classification_metrics`), vectorised
    with bincount because the bootstrap calls it thousands of times."""
    tp = np.bincount(y_true[y_true == y_pred], minlength=num_classes).astype(float)
    support = np.bincount(y_true, minlength=num_classes).astype(float)
    pred = np.bincount(y_pred, minlength=num_classes).astype(float)
    denom = support + pred
    f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1.0), 0.0)
    return float(np.mean(f1[support > 0]))
