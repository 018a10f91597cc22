from __future__ import annotations

import numpy as np

from atalaia.face.evalset import build_eval_set, verification_summary


def test_eval_set_drops_pairs_with_corrupt_or_missing_images(face_data):
    ev = build_eval_set(face_data["lfw"], face_data["lfw"] / "pairs.txt", 32, enrol_per_identity=1,
                        open_set_min_images=3, seed=0)
    assert ev.n_declared == 8 and len(ev.left) == 7  # Cid_C_0003 is corrupt: its pair is left out, listed
    assert len(ev.missing_pairs) == 1 and "cannot read" in ev.missing_pairs[0]["reason"]
    assert ev.missing_pairs[0]["line"] == 9
    ev2 = build_eval_set(face_data["lfw"], face_data["lfw"] / "pairs_missing.txt", 32, enrol_per_identity=1,
                         open_set_min_images=3)
    assert any("Nobody_N" in m["reason"] for m in ev2.missing_pairs)
    s = ev2.summary()
    assert s["pairs_declared"] == s["pairs_used"] + s["pairs_missing"]


def test_verification_summary_on_hand_made_embeddings(face_data):
    ev = build_eval_set(face_data["lfw"], face_data["lfw"] / "pairs.txt", 32, enrol_per_identity=1,
                        open_set_min_images=3, seed=0)
    # one-hot embedding per person: same person -> cosine 1, different -> 0: perfect verification
    people = sorted({p.split("/")[0] for p in ev.rel_paths})
    emb = np.array([np.eye(len(people))[people.index(p.split("/")[0])] for p in ev.rel_paths])
    ver, (fpr, tpr) = verification_summary(emb, ev)
    assert ver["acc_mean"] == 1.0 and ver["auc"] == 1.0 and ver["tar_at_far_0.001"] == 1.0
    assert 0.0 < ver["threshold"] <= 1.0
    os_ = ver["open_set"]
    assert os_["rank1"] == 1.0 and os_["far"] == 0.0  # strangers (cosine 0) rejected
    # constant embeddings: every pair scores 1 -> chance accuracy, AUC 0.5
    ver, _ = verification_summary(np.ones((len(ev.rel_paths), 4)), ev)
    assert ver["auc"] == 0.5 and ver["acc_mean"] <= 0.75
