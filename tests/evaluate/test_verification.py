"""Verification metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from atalaia.errors import DataError
from atalaia.evaluate.verification import (
    accuracy_at,
    best_threshold,
    cosine_scores,
    euclidean_distances,
    impostor_tail,
    lfw_10fold,
    mirror_fuse,
    open_set_identification,
    open_set_threshold,
    plot_roc,
    roc,
    roc_auc,
    tar_at_far,
)

T, F = True, False


def test_best_threshold_by_hand():
    # sorted: 0.1F 0.3T 0.4F 0.6T 0.7F 0.9T. Candidates 0.1 .2 .35 .5 .65 .8 >.9 give 3,4,3,4,3,4,3 right of 6;
    # the tie 0.2 / 0.5 / 0.8 resolves to the middle one.
    th, acc = best_threshold([0.1, 0.3, 0.4, 0.6, 0.7, 0.9], [F, T, F, T, F, T])
    assert th == pytest.approx(0.5) and acc == pytest.approx(4 / 6)
    th, acc = best_threshold([0.1, 0.2, 0.35, 0.4, 0.8, 0.9], [F, F, F, T, T, T])
    assert th == pytest.approx(0.375) and acc == 1.0
    assert accuracy_at([0.5, 0.5], [T, F], 0.5) == 0.5  # ">=" accepts the tie


def test_lfw_10fold_by_hand():
    # fold 0 tested with the threshold fit on fold 1 and vice versa (worked out in the comments)
    scores = [0.9, 0.2, 0.6, 0.4, 0.8, 0.3, 0.45, 0.5]
    same = [T, F, T, F, T, F, T, F]
    folds = [0, 0, 0, 0, 1, 1, 1, 1]
    r = lfw_10fold(scores, same, folds)
    # fit on fold 1 (0.3F .45T .5F .8T): best 3/4 at 0.375 and 0.65 -> middle-of-ties rule picks 0.65;
    #   fold 0 at 0.65: 0.6T rejected -> 3/4.
    # fit on fold 0 (0.2F .4F .6T .9T): perfect at 0.5; fold 1 at 0.5: 0.45T rejected, 0.5F accepted -> 2/4.
    assert r["fold_threshold"] == pytest.approx([0.65, 0.5])
    assert r["fold_acc"] == pytest.approx([0.75, 0.5])
    assert r["mean"] == pytest.approx(0.625) and r["std"] == pytest.approx(0.125)
    assert (r["n_folds"], r["n_pairs"], r["fold_size"]) == (2, 8, [4, 4])


def test_lfw_10fold_perfectly_separable_ten_folds():
    rng = np.random.default_rng(0)
    same = np.tile([T] * 30 + [F] * 30, 10)
    scores = np.where(same, rng.uniform(0.6, 1.0, same.size), rng.uniform(0.0, 0.4, same.size))
    r = lfw_10fold(scores, same, np.repeat(np.arange(10), 60))
    assert r["mean"] == 1.0 and r["std"] == 0.0 and len(r["fold_acc"]) == 10
    assert all(0.4 <= t <= 0.6 for t in r["fold_threshold"])


def test_roc_points_and_auc_by_hand():
    scores = [0.9, 0.8, 0.7, 0.4, 0.3, 0.2]
    same = [T, F, T, T, F, F]
    fpr, tpr, thr = roc(scores, same)
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 1 / 3, 2 / 3, 1, 1, 1])
    assert np.isinf(thr[0]) and thr[1:].tolist() == scores
    # genuine > impostor in 3 + 2 + 2 = 7 of 9 pairs
    assert roc_auc(scores, same) == pytest.approx(7 / 9)
    assert roc_auc([0.5, 0.5], [T, F]) == pytest.approx(0.5)  # a tie counts one half
    assert roc_auc([0.1, 0.9], [T, F]) == 0.0


def test_tar_at_far_crafted():
    imp = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    gen = [0.5, 0.85, 0.92, 0.97, 0.99]
    s = imp + gen
    y = [F] * 10 + [T] * 5
    # accept score >= t. FAR 0: t=.97 lets in 2/5 genuine, no impostor. FAR .1: t=.92 admits impostor .95
    # and genuine .92 .97 .99. FAR .2: t=.85 admits impostors .9 .95 and 4/5 genuine. FAR .3: t=.8 (same TAR,
    # the lowest threshold still within the FAR budget).
    assert tar_at_far(s, y, 0.0) == (pytest.approx(0.4), pytest.approx(0.97))
    assert tar_at_far(s, y, 0.1) == (pytest.approx(0.6), pytest.approx(0.92))
    assert tar_at_far(s, y, 0.2) == (pytest.approx(0.8), pytest.approx(0.85))
    assert tar_at_far(s, y, 0.3) == (pytest.approx(0.8), pytest.approx(0.8))
    assert tar_at_far(s, y, 0.05) == tar_at_far(s, y, 0.0)  # below 1/M impostors means FAR 0
    assert tar_at_far(s, y, 1.0)[0] == 1.0
    with pytest.raises(DataError):
        tar_at_far(s, y, 1.5)


def test_cosine_and_euclidean():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    b = np.array([[0.0, 3.0], [2.0, 2.0], [-1.0, 0.0]])
    np.testing.assert_allclose(cosine_scores(a, b), [0.0, 1.0, -1.0])
    np.testing.assert_allclose(euclidean_distances(a, b), [np.sqrt(10), np.sqrt(2), 3.0])
    with pytest.raises(DataError):
        cosine_scores(a, b[:2])


def test_mirror_fuse_by_hand():
    # unit([1, 0]) + unit([0, 2]) = [1, 1] -> [0.7071, 0.7071]; opposite scales do not change the direction
    a = np.array([[1.0, 0.0], [3.0, 4.0]])
    b = np.array([[0.0, 2.0], [30.0, 40.0]])
    fused = mirror_fuse(a, b)
    np.testing.assert_allclose(fused, [[np.sqrt(0.5), np.sqrt(0.5)], [0.6, 0.8]], atol=1e-7)
    assert fused.dtype == np.float32
    with pytest.raises(DataError, match="mirror"):
        mirror_fuse(a, b[:1])


def test_open_set_identification_by_hand():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0]])
    gids = ["A", "B"]
    probes = np.array(
        [
            [0.9, 0.1],  # A -> A, cos .994: accepted, right
            [0.5, 0.6],  # B -> B, cos .768: rejected at .8
            [0.1, 0.9],  # A -> B, cos .994: accepted, wrong person
            [0.7, 0.7],  # C (not enrolled), cos .707: rejected
            [1.0, 0.05],  # D (not enrolled), cos .999: accepted -> false accept
        ]
    )
    r = open_set_identification(gallery, gids, probes, ["A", "B", "A", "C", "D"], threshold=0.8)
    assert r["rank1"] == pytest.approx(2 / 3)
    assert r["dir"] == pytest.approx(1 / 3)
    assert r["frr"] == pytest.approx(1 / 3)
    assert r["misid"] == pytest.approx(1 / 3)
    assert r["far"] == pytest.approx(1 / 2)
    assert (r["n_genuine"], r["n_impostor"]) == (3, 2)
    only_genuine = open_set_identification(gallery, gids, probes[:1], ["A"], 0.8)
    assert np.isnan(only_genuine["far"]) and only_genuine["rank1"] == 1.0


def test_input_validation():
    with pytest.raises(DataError, match="differ"):
        roc([0.1, 0.2], [T])
    with pytest.raises(DataError, match="both"):
        roc([0.1, 0.2], [T, T])
    with pytest.raises(DataError, match="NaN"):
        best_threshold([np.nan, 0.2], [T, F])
    with pytest.raises(DataError, match="2 folds"):
        lfw_10fold([0.1, 0.2], [T, F], [0, 0])


def test_plot_roc_writes_png(tmp_path):
    fpr, tpr, _ = roc([0.9, 0.8, 0.7, 0.4, 0.3, 0.2], [T, F, T, T, F, F])
    out = plot_roc(
        {"toy": (fpr, tpr), "ideal": (np.array([0, 0, 1.0]), np.array([0, 1.0, 1]))},
        tmp_path / "r" / "roc.png",
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def test_impostor_tail_is_the_kth_highest_cross_identity_score():
    rng = np.random.default_rng(3)
    emb = rng.standard_normal((200, 8))
    ids = rng.integers(0, 20, 200)
    tail = impostor_tail(emb, ids, fars=(1e-2, 1e-3, 1e-4))
    u = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    i, j = np.triu_indices(200, 1)
    s = np.sort(np.sum(u[i] * u[j], axis=1)[ids[i] != ids[j]])[::-1]
    assert tail["pairs"] == len(s)
    assert tail["thresholds"]["0.01"] == pytest.approx(s[round(0.01 * len(s)) - 1], abs=1e-6)
    assert tail["thresholds"]["0.001"] == pytest.approx(s[round(0.001 * len(s)) - 1], abs=1e-6)
    assert "0.0001" not in tail["thresholds"]  # ~2 pairs: not resolvable, left out
    with pytest.raises(DataError, match="N ids"):
        impostor_tail(emb, ids[:5])


def test_open_set_threshold_grows_with_the_gallery():
    tail = {"thresholds": {"0.01": 0.5, "0.001": 0.7}}
    assert open_set_threshold(tail, 1, 0.01) == (pytest.approx(0.5), pytest.approx(0.01))
    th, p = open_set_threshold(tail, 10, 0.01)  # p = 1 - 0.99^(1/10) = 0.0010045
    assert p == pytest.approx(1 - 0.99 ** 0.1) and th == pytest.approx(0.5 + 0.2 * np.log10(100 * p) / -1, abs=1e-9)
    assert open_set_threshold(tail, 1000, 0.01)[0] == pytest.approx(0.7)  # beyond the tail: strictest known
    with pytest.raises(DataError, match="open_far"):
        open_set_threshold(tail, 0, 0.01)
