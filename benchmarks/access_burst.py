"""Door mode's burst decision on LFW: residents refused / strangers admitted, single frame vs a burst of frames.

Usage:
    python benchmarks/access_burst.py [--lfw DIR] [--frames 3] [--enrol 5] [--household 5] [--households 300]
        [--stranger-visits 50] [--out benchmarks/results/access_burst.json]

Which model: the **dlib ResNet teacher**, through the embeddings stored with the LFW chips
(`dlib_resnet128.npz`). There is no trained face run (int8 student) on this machine, so the student's figure
cannot be measured here; `--run-dir RUN` embeds the same chips with a run's int8 model through the access
core instead (the same path as benchmarks/access_control.py).

Scenario (as benchmarks/access_control.py): LFW people with >= 10 chips can be residents (first `--enrol`
chips enrolled, the next `--frames` chips are one door visit); people with `--frames` to 9 chips are strangers
(their first `--frames` chips are one visit). Each household draw: `--household` residents, `--stranger-visits`
stranger visits. Threshold: `open_far_1e-2` for the household's template count, from the impostor tail of the
same embeddings (as `atalaia access` does).

Rules compared, all with the same threshold:
- `single`: every frame decided on its own (what one photo at the door gets);
- `best_of_n`: a visit is granted if any of its frames is (n chances for a stranger, too);
- `majority`: the access core's burst rule (`atalaia.face.access.majority`), what `atalaia serve`'s door mode
  does: granted when more than half of the frames (2 of 3) are granted on their own as the same person;
- `fused`: one decision on the normalised mean of the frames' unit embeddings (`atalaia.face.access.fuse`);
- `mean_score`: each enrolled person's best-template cosine, averaged over the frames; best person vs threshold.
Caveat: LFW's "frames" of a visit are different photos of the person (other days, light, pose), far more
varied than consecutive camera frames; a real burst gains less from fusion than this shows.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED_LFW = Path("/work/shared/datasets/lfw")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lfw", type=Path, default=SHARED_LFW)
    ap.add_argument("--run-dir", type=Path, default=None, help="embed with this face run's int8 model instead")
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--enrol", type=int, default=5)
    ap.add_argument("--min-images", type=int, default=10)
    ap.add_argument("--household", type=int, default=5)
    ap.add_argument("--households", type=int, default=300)
    ap.add_argument("--stranger-visits", type=int, default=50)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "access_burst.json")
    a = ap.parse_args(argv)

    import numpy as np

    from atalaia.evaluate.verification import impostor_tail, open_set_identification, open_set_threshold
    from atalaia.face.access import fuse, majority, unit
    from atalaia.ioutil import atomic_write_json

    with np.load(a.lfw / "dlib_resnet128.npz") as z:
        chips, emb = [str(c) for c in z["chip"]], z["emb"].astype(np.float32)
    by_person: dict[str, list[int]] = {}
    for i, c in enumerate(chips):
        by_person.setdefault(Path(c).parent.name, []).append(i)
    for v in by_person.values():
        v.sort(key=lambda i: chips[i])
    model = "dlib ResNet teacher (stored LFW embeddings)"
    if a.run_dir is not None:
        from atalaia.face.access import AccessControl

        ac = AccessControl(a.run_dir, state_dir=HERE / ".work" / "burst_state", aligned=True)
        emb, bad = ac.embed([a.lfw / c for c in chips])
        if bad:
            raise SystemExit(f"unreadable chips: {bad[:3]}")
        model = f"int8 student of {a.run_dir} (LiteRT, via the access core)"
    emb = unit(emb)
    need = a.enrol + a.frames
    pool = [p for p, ix in by_person.items() if len(ix) >= max(a.min_images, need)]
    strangers = [p for p, ix in by_person.items() if a.frames <= len(ix) < a.min_images]
    used = sorted({i for p in pool + strangers for i in by_person[p]})
    tail = impostor_tail(emb[used], [Path(chips[i]).parent.name for i in used])
    th, pfar = open_set_threshold(tail, a.household * a.enrol, 1e-2)
    rng = np.random.default_rng(0)

    counts = {r: {"resident_visits": 0, "refused": 0, "in_as_someone_else": 0, "stranger_visits": 0,
                  "strangers_in": 0} for r in ("single", "majority", "best_of_n", "fused", "mean_score")}
    for _ in range(a.households):
        res = [pool[i] for i in rng.permutation(len(pool))[: a.household]]
        vis = [strangers[i] for i in rng.permutation(len(strangers))[: a.stranger_visits]]
        g_idx = [i for p in res for i in by_person[p][: a.enrol]]
        g_ids = [p for p in res for _ in range(a.enrol)]
        g = emb[g_idx]
        visits = [(p, by_person[p][a.enrol : need]) for p in res] + [(p, by_person[p][: a.frames]) for p in vis]
        # single frames: every frame is its own attempt (the report's open-set rule)
        f_idx = [i for _, ix in visits for i in ix]
        f_ids = [p for p, ix in visits for _ in ix]
        o = open_set_identification(g, g_ids, emb[f_idx], f_ids, th)
        c = counts["single"]
        c["resident_visits"] += o["n_genuine"]
        c["stranger_visits"] += o["n_impostor"]
        c["refused"] += round(o["frr"] * o["n_genuine"])
        c["in_as_someone_else"] += round(o["misid"] * o["n_genuine"])
        c["strangers_in"] += round(o["far"] * o["n_impostor"])
        # fused: one probe per visit
        fz = np.stack([fuse(emb[ix]) for _, ix in visits])
        o = open_set_identification(g, g_ids, fz, [p for p, _ in visits], th)
        c = counts["fused"]
        c["resident_visits"] += o["n_genuine"]
        c["stranger_visits"] += o["n_impostor"]
        c["refused"] += round(o["frr"] * o["n_genuine"])
        c["in_as_someone_else"] += round(o["misid"] * o["n_genuine"])
        c["strangers_in"] += round(o["far"] * o["n_impostor"])
        # per-visit rules on the frames' scores
        gid = np.asarray(g_ids)
        people = sorted(set(g_ids))
        for p, ix in visits:
            sim = emb[ix] @ g.T  # (frames, templates)
            per_person = np.stack([sim[:, gid == q].max(1) for q in people], 1)  # (frames, people)
            # best of n: granted if any frame reaches the threshold; who = the best frame's match
            k, j = np.unravel_index(int(per_person.argmax()), per_person.shape)
            best = (people[j], per_person[k, j] >= th)
            # mean score: each person's best-template cosine averaged over the frames
            m = per_person.mean(0)
            mean = (people[int(m.argmax())], m.max() >= th)
            # majority: the access core's burst rule (atalaia.face.access.majority) on the per-frame 1-NN matches
            mw, _, mok, _ = majority([(people[int(r.argmax())], float(r.max()), th) for r in per_person])
            for rule, (who, ok) in (("best_of_n", best), ("mean_score", mean), ("majority", (mw, mok))):
                c = counts[rule]
                if p in res:
                    c["resident_visits"] += 1
                    c["refused"] += int(not ok)
                    c["in_as_someone_else"] += int(bool(ok) and who != p)
                else:
                    c["stranger_visits"] += 1
                    c["strangers_in"] += int(bool(ok))
    rows = []
    for rule, c in counts.items():
        rows.append({"rule": rule, "unit": "frame" if rule == "single" else f"visit of {a.frames} frames",
                     "resident_attempts": c["resident_visits"], "stranger_attempts": c["stranger_visits"],
                     "residents_refused": c["refused"] / c["resident_visits"],
                     "residents_in_as_someone_else": c["in_as_someone_else"] / c["resident_visits"],
                     "strangers_admitted": c["strangers_in"] / c["stranger_visits"]})
    doc = {"benchmark": "access_burst", "model": model, "threshold_rule": "open_far_1e-2",
           "threshold": round(th, 4), "pairwise_far": pfar, "templates": a.household * a.enrol,
           "frames_per_visit": a.frames, "households": a.households, "household": a.household,
           "stranger_visits_per_household": a.stranger_visits, "residents_pool": len(pool),
           "strangers_pool": len(strangers), "impostor_pairs": tail["pairs"], "rows": rows,
           "caveat": "LFW frames of a visit are different photos (more varied than consecutive camera frames); "
                     "threshold and tail from LFW itself: an in-distribution check",
           "machine": {"python": sys.version.split()[0], "platform": platform.platform()}}
    atomic_write_json(a.out, doc)
    print(f"{model}: threshold {th:.3f} (open_far_1e-2, {a.household * a.enrol} templates)")
    for r in rows:
        print(f"  {r['rule']:>9} per {r['unit']}: residents refused {100 * r['residents_refused']:.2f}%, in as "
              f"someone else {100 * r['residents_in_as_someone_else']:.2f}%, strangers admitted "
              f"{100 * r['strangers_admitted']:.2f}%")
    return doc


if __name__ == "__main__":
    main()
