"""Face verification and open-set identification metrics (pure numpy; no sklearn).

Convention everywhere: a **score is a similarity — higher means "more likely the same person"** and a pair is
accepted as "same" when ``score >= threshold``. For distances (dlib's Euclidean), pass ``-distance``.

- :func:`lfw_10fold` — the LFW protocol: for each fold, pick the threshold that maximises accuracy on the
  other folds, then measure accuracy on the held-out fold; report mean and std (population std, ``ddof=0``, as
  most LFW code does) over folds.
- :func:`roc`, :func:`roc_auc`, :func:`tar_at_far` — threshold-free views (TAR = true accept rate on genuine
  pairs, FAR = false accept rate on impostor pairs).
- :func:`open_set_identification` — access control: 1-NN cosine match against an enrolled gallery with a
  rejection threshold; reports rank-1 for enrolled people and false accepts for people not enrolled.
- :func:`impostor_tail`, :func:`open_set_threshold` — thresholds for a target open-set FAR given the gallery
  size, from the tail of all cross-identity pair scores (what `atalaia access` uses by default).
- :func:`plot_roc` — PNG of ROC curves (matplotlib Agg canvas, no pyplot global state).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from atalaia.errors import DataError
from atalaia.ioutil import atomic_write_bytes


def _check(scores: Any, is_same: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(is_same).reshape(-1)
    if s.shape != y.shape:
        raise DataError(f"scores ({s.shape[0]}) and is_same ({y.shape[0]}) differ in length")
    if not np.all(np.isfinite(s)):
        raise DataError(f"{int((~np.isfinite(s)).sum())} score(s) are NaN/inf")
    return s, y.astype(bool)


def _both_classes(y: np.ndarray, what: str) -> None:
    if not y.any() or y.all():
        raise DataError(f"{what} needs both genuine (same) and impostor (different) pairs")


# ------------------------------------------------------------------------------------------------ scores
def cosine_scores(emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of paired embeddings (N, D), (N, D) -> (N,) float64."""
    a = np.asarray(emb_a, dtype=np.float64)
    b = np.asarray(emb_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise DataError(f"paired embeddings must both be (N, D), got {a.shape} and {b.shape}")
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.maximum(na * nb, 1e-12)


def euclidean_distances(emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray:
    """Row-wise Euclidean distance (N,) — dlib's metric; use ``-euclidean_distances(a, b)`` as scores."""
    a = np.asarray(emb_a, dtype=np.float64)
    b = np.asarray(emb_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise DataError(f"paired embeddings must both be (N, D), got {a.shape} and {b.shape}")
    return np.linalg.norm(a - b, axis=1)


def mirror_fuse(emb: np.ndarray, emb_mirror: np.ndarray) -> np.ndarray:
    """Mirror test-time augmentation: unit(unit(e(x)) + unit(e(mirror x))), float32 (N, D).

    A face and its mirror image are the same person, so a small student's errors that depend on which side the
    light or the head turns partly cancel in the average (LFW View 1: +0.4 to +1.1 points for our students).
    It costs a second inference per face; the device must fuse exactly like this (dequantize, normalise, add,
    normalise)."""
    a = np.asarray(emb, dtype=np.float64)
    b = np.asarray(emb_mirror, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise DataError(f"embeddings and mirror embeddings must both be (N, D), got {a.shape} and {b.shape}")

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    return unit(unit(a) + unit(b)).astype(np.float32)


# -------------------------------------------------------------------------------------------- thresholds
def accuracy_at(scores: Any, is_same: Any, threshold: float) -> float:
    """Fraction of pairs classified right when "same" means ``score >= threshold``."""
    s, y = _check(scores, is_same)
    return float(((s >= threshold) == y).mean())


def best_threshold(scores: Any, is_same: Any) -> tuple[float, float]:
    """Threshold maximising accuracy on (scores, is_same), and that accuracy.

    Candidates: every midpoint between consecutive distinct scores, plus the lowest score (accept all) and
    just above the highest (reject all). Ties: the middle one of the tied candidates (index ``len // 2`` in
    increasing order), which keeps the threshold away from the edge of a flat optimum.
    """
    s, y = _check(scores, is_same)
    if len(s) == 0:
        raise DataError("best_threshold needs at least one pair")
    u = np.unique(s)
    cand = np.concatenate([[u[0]], (u[:-1] + u[1:]) / 2.0, [np.nextafter(u[-1], np.inf)]])
    pos = np.sort(s[y])
    neg = np.sort(s[~y])
    tp = len(pos) - np.searchsorted(pos, cand, side="left")  # genuine with score >= c
    tn = np.searchsorted(neg, cand, side="left")  # impostors with score < c
    acc = (tp + tn) / len(s)
    best = np.flatnonzero(acc == acc.max())
    k = best[len(best) // 2]
    return float(cand[k]), float(acc[k])


def lfw_10fold(scores: Any, is_same: Any, folds: Any) -> dict[str, Any]:
    """LFW protocol: threshold chosen on the other folds, accuracy on the held-out fold.

    ``folds``: fold index per pair (any integer labels; usually 0..9 from ``Pairs.fold``). Returns
    ``mean``, ``std`` (ddof=0), ``fold_acc``, ``fold_threshold``, ``fold_size``, ``n_folds``, ``n_pairs``.
    """
    s, y = _check(scores, is_same)
    f = np.asarray(folds).reshape(-1)
    if f.shape != s.shape:
        raise DataError(f"folds ({f.shape[0]}) and scores ({s.shape[0]}) differ in length")
    ids = np.unique(f)
    if len(ids) < 2:
        raise DataError("lfw_10fold needs at least 2 folds (threshold is fit on the others)")
    accs, ths, sizes = [], [], []
    for k in ids:
        test = f == k
        th, _ = best_threshold(s[~test], y[~test])
        accs.append(float(((s[test] >= th) == y[test]).mean()))
        ths.append(th)
        sizes.append(int(test.sum()))
    a = np.array(accs)
    return {
        "mean": float(a.mean()),
        "std": float(a.std()),
        "fold_acc": accs,
        "fold_threshold": ths,
        "fold_size": sizes,
        "n_folds": len(ids),
        "n_pairs": int(len(s)),
    }


# ---------------------------------------------------------------------------------------------------- ROC
def roc(scores: Any, is_same: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve: (fpr, tpr, thresholds), thresholds decreasing; point k accepts ``score >= thresholds[k]``.

    The first point is (0, 0) at threshold +inf; one point per distinct score after that, ending at (1, 1).
    """
    s, y = _check(scores, is_same)
    _both_classes(y, "roc")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    tp = np.cumsum(y)[last]
    fp = np.cumsum(~y)[last]
    tpr = np.r_[0.0, tp / y.sum()]
    fpr = np.r_[0.0, fp / (~y).sum()]
    thr = np.r_[np.inf, s[last]]
    return fpr, tpr, thr


def roc_auc(scores: Any, is_same: Any) -> float:
    """Area under the ROC curve (trapezoids; ties count one half) = P(genuine score > impostor score)."""
    fpr, tpr, _ = roc(scores, is_same)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def tar_at_far(scores: Any, is_same: Any, far: float) -> tuple[float, float]:
    """Highest TAR whose FAR is <= ``far``, and its threshold (accept ``score >= threshold``).

    Returns ``(tar, threshold)``; ``(0.0, inf)`` when no threshold reaches that FAR. With M impostor pairs the
    smallest non-zero FAR is 1/M, so FAR targets below that measure TAR at FAR = 0.
    """
    if not 0.0 <= far <= 1.0:
        raise DataError(f"far must be in [0, 1], got {far}")
    fpr, tpr, thr = roc(scores, is_same)
    ok = np.flatnonzero(fpr <= far + 1e-12)
    k = ok[-1]  # fpr and tpr are non-decreasing: the last admissible point has the highest TAR
    return float(tpr[k]), float(thr[k])


# ------------------------------------------------------------------------------------------------ open set
def open_set_identification(
    gallery_emb: np.ndarray,
    gallery_ids: Sequence[Any] | np.ndarray,
    probe_emb: np.ndarray,
    probe_ids: Sequence[Any] | np.ndarray,
    threshold: float,
) -> dict[str, Any]:
    """Open-set 1-NN identification with cosine similarity and a rejection threshold.

    Each probe is matched to its most similar gallery template (several templates per id allowed) and
    accepted if that similarity is ``>= threshold``. Probes whose id is enrolled are *genuine*, the others
    *impostors*. Returns:

    - ``rank1``: closed-set rank-1 accuracy of genuine probes (threshold ignored);
    - ``dir``: detection-and-identification rate — genuine probes accepted *and* matched to the right id;
    - ``frr``: genuine probes rejected (best similarity below threshold);
    - ``misid``: genuine probes accepted as someone else;
    - ``far``: impostor probes accepted as anyone (a stranger let in);
    - counts ``n_genuine``, ``n_impostor`` and the ``threshold``. Rates over an empty set are NaN.
    """
    g = np.asarray(gallery_emb, dtype=np.float64)
    p = np.asarray(probe_emb, dtype=np.float64)
    gid = np.asarray(gallery_ids)
    pid = np.asarray(probe_ids)
    if g.ndim != 2 or p.ndim != 2 or g.shape[1] != p.shape[1]:
        raise DataError(f"gallery {g.shape} and probes {p.shape} must be (N, D) with the same D")
    if len(gid) != len(g) or len(pid) != len(p):
        raise DataError("one id per gallery/probe embedding is required")
    if len(g) == 0:
        raise DataError("the gallery is empty: enrol at least one template")
    gn = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    pn = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
    sim = pn @ gn.T
    best = sim.argmax(1)
    best_sim = sim[np.arange(len(p)), best]
    pred = gid[best]
    accepted = best_sim >= threshold
    genuine = np.isin(pid, gid)
    correct = pred == pid

    def rate(mask: np.ndarray, within: np.ndarray) -> float:
        n = int(within.sum())
        return float((mask & within).sum() / n) if n else float("nan")

    return {
        "rank1": rate(correct, genuine),
        "dir": rate(correct & accepted, genuine),
        "frr": rate(~accepted, genuine),
        "misid": rate(accepted & ~correct, genuine),
        "far": rate(accepted, ~genuine),
        "n_genuine": int(genuine.sum()),
        "n_impostor": int((~genuine).sum()),
        "threshold": float(threshold),
    }


def impostor_tail(emb: np.ndarray, ids: Sequence[Any] | np.ndarray, *,
                  fars: Sequence[float] = (1e-2, 1e-3, 1e-4, 1e-5), max_images: int = 6000,
                  seed: int = 0) -> dict[str, Any]:
    """Cosine thresholds at which a given fraction of *all* different-person image pairs is accepted.

    A gallery of T templates gives a stranger T chances, so the open-set false-accept rate is about
    1 - (1 - p)^T, with p the pairwise FAR: the pairs protocol's 3,000 impostor pairs cannot reach the small
    p a household gallery needs (~4e-4 for T = 25 at 1 % open-set FAR), but every cross-identity pair of the
    evaluation images can (6,000 images: ~18 M pairs; at most ``max_images`` random images are used).
    Returns {"pairs": n, "thresholds": {str(far): threshold}}; a FAR that n pairs cannot resolve (n * far < 10)
    is left out.
    """
    e = np.asarray(emb, np.float32)
    ids = np.asarray(ids)
    if e.ndim != 2 or len(e) != len(ids):
        raise DataError(f"impostor_tail needs (N, D) embeddings and N ids, got {e.shape} and {ids.shape}")
    if len(e) > max_images:
        keep = np.sort(np.random.default_rng(seed).permutation(len(e))[:max_images])
        e, ids = e[keep], ids[keep]
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    chunks = []
    for i in range(0, len(e), 512):
        sim = e[i : i + 512] @ e.T
        rows = np.arange(i, min(i + 512, len(e)))[:, None]
        keep_pair = (np.arange(len(e))[None, :] > rows) & (ids[i : i + 512, None] != ids[None, :])
        chunks.append(sim[keep_pair])
    scores = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    n = len(scores)
    out: dict[str, float] = {}
    for far in fars:
        k = int(round(far * n))
        if k < 10:
            continue
        out[f"{far:g}"] = float(np.partition(scores, n - k)[n - k])  # the k-th highest impostor score
    return {"pairs": int(n), "thresholds": out}


def open_set_threshold(tail: Mapping[str, Any], templates: int, open_far: float) -> tuple[float, float]:
    """Threshold for an open-set FAR of ``open_far`` with ``templates`` enrolled templates, from
    :func:`impostor_tail`: p = 1 - (1 - open_far)^(1 / templates), threshold interpolated linearly in
    log10(p) between the tail's points. Returns (threshold, p). Beyond the tail's range the nearest known
    threshold is used: when p is below the tail's smallest FAR p_min, the open-set FAR is then about
    1 - (1 - p_min)^templates, *above* ``open_far`` (callers should say so; `AccessControl.warning` does)."""
    pts = sorted((float(k), float(v)) for k, v in tail["thresholds"].items())  # increasing FAR
    if not pts:
        raise DataError("the impostor tail has no thresholds (too few impostor pairs)")
    if not 0.0 < open_far < 1.0 or templates < 1:
        raise DataError(f"open_far must be in (0, 1) and templates >= 1, got {open_far} and {templates}")
    p = 1.0 - (1.0 - open_far) ** (1.0 / templates)
    th = np.interp(np.log10(p), np.log10([f for f, _ in pts]), [t for _, t in pts])
    return float(th), float(p)


# ---------------------------------------------------------------------------------------------------- plot
def plot_roc(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path, *, title: str = "ROC"
) -> Path:
    """Write a PNG of ROC curves ``{name: (fpr, tpr)}`` (log-scale FAR axis, AUC in the legend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise DataError("plot_roc needs at least one curve")
    fig = Figure(figsize=(5.5, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    floor = 1e-4
    for name, (fpr, tpr) in curves.items():
        fpr = np.asarray(fpr, dtype=np.float64)
        tpr = np.asarray(tpr, dtype=np.float64)
        auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
        pos = fpr[fpr > 0]
        if len(pos):
            floor = min(floor, float(pos.min()))
        ax.step(np.maximum(fpr, 1e-12), tpr, where="post", label=f"{name} (AUC {auc:.4f})")
    ax.set_xscale("log")
    ax.set_xlim(floor / 2, 1.0)
    ax.set_ylim(0.0, 1.005)
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())


__all__ = [
    "accuracy_at",
    "best_threshold",
    "cosine_scores",
    "euclidean_distances",
    "impostor_tail",
    "lfw_10fold",
    "mirror_fuse",
    "open_set_identification",
    "open_set_threshold",
    "plot_roc",
    "roc",
    "roc_auc",
    "tar_at_far",
]
