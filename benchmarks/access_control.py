"""Access-control case study on LFW: enrol people, open the door for them, keep strangers out.

Usage:
    python benchmarks/access_control.py --run-dir runs/lfw [--lfw DIR] [--enrol 5] [--attempts 5]
        [--household 5] [--households 300] [--stranger-knocks 50] [--min-images 10] [--max-impostors 2000]
        [--tier S|M] [--out benchmarks/results/access_control.json]

`--tier S` / `--tier M` labels the door table with the face tier of the run (`benchmarks/lfw.py --tier`) and
writes it to `benchmarks/results/access_control_<tier>.json` unless `--out` is given, e.g.
`python benchmarks/access_control.py --run-dir runs/lfw_s --tier S`.

Everything goes through `atalaia.face.access.AccessControl`, the code behind `atalaia access`: the run's int8
model in LiteRT embeds every chip once, and each rule's threshold is asked from the app for the gallery size
at hand. LFW people with >= `--min-images` chips can be residents (their first `--enrol` chips, in file-name
order, are enrolled; the next `--attempts` chips knock on the door); people with fewer chips are strangers
(one chip each). Two scenarios:

- `household_N`: `--households` random draws of N residents, each visited by `--stranger-knocks` strangers;
- `building_M`: all M eligible people enrolled at once (the report's open-set setting).

For each threshold rule: residents let in as themselves, refused, let in as someone else, strangers let in.
The dlib teacher (the stored embeddings of the same chips, with its own impostor tail) is run through the
same scenarios and open-set rules as the reference.
Caveat (also in the JSON): the thresholds and the impostor tail were measured on LFW itself, so this is an
in-distribution check of the app and its decision rule, not a fresh FAR estimate for another population.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED_LFW = Path("/work/shared/datasets/lfw")  # the shared workstation's copy (default only there)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--lfw", type=Path, default=SHARED_LFW)
    ap.add_argument("--enrol", type=int, default=5)
    ap.add_argument("--min-images", type=int, default=10)
    ap.add_argument("--max-impostors", type=int, default=2000)
    ap.add_argument("--attempts", type=int, default=5, help="door attempts per resident (chips after the enrolled)")
    ap.add_argument("--household", type=int, default=5)
    ap.add_argument("--households", type=int, default=300)
    ap.add_argument("--stranger-knocks", type=int, default=50)
    ap.add_argument("--tier", choices=("S", "M"), default=None, help="face tier of the run (labels the table)")
    ap.add_argument("--out", type=Path, default=None, help="default results/access_control[_<tier>].json")
    a = ap.parse_args(argv)
    if a.out is None:
        a.out = HERE / "results" / (f"access_control_{a.tier.lower()}.json" if a.tier else "access_control.json")

    import numpy as np

    from atalaia.data.lfw import resolve_image_root
    from atalaia.face.access import OPEN_SET, THRESHOLDS, AccessControl
    from atalaia.ioutil import atomic_write_json

    root = resolve_image_root(a.lfw)
    people = {d.name: sorted(d.glob("*.jpg")) for d in sorted(root.iterdir()) if d.is_dir()}
    pool = [n for n, fs in people.items() if len(fs) >= a.min_images]
    rng = np.random.default_rng(0)
    strangers = [fs[0] for n, fs in people.items() if len(fs) < a.min_images]
    strangers = [strangers[i] for i in rng.permutation(len(strangers))[: a.max_impostors]]
    state = HERE / ".work" / "access_state"
    for f in ("access.db", "access.db-wal", "access.db-shm", "gallery.json"):  # a fresh store each time
        (state / f).unlink(missing_ok=True)
    ac = AccessControl(a.run_dir, state_dir=state, aligned=True)
    # every chip embedded once by the app's own path (int8 LiteRT); decisions below are the app's rule
    files = [f for n in pool for f in people[n]] + strangers
    t0 = time.perf_counter()
    emb, bad = ac.embed(files)
    embed_s = time.perf_counter() - t0
    if bad:
        raise SystemExit(f"unreadable chips: {bad[:3]}")
    row_of = {f: i for i, f in enumerate(files)}

    def scenario(emb, residents: list[str], stranger_files: list[Path], rules: dict[str, float]) -> dict[str, dict]:
        """Counts per rule, from the report's open-set rule (`open_set_identification`, = AccessControl.check)."""
        from atalaia.evaluate.verification import open_set_identification

        g_idx = [row_of[f] for n in residents for f in people[n][: a.enrol]]
        g_ids = [n for n in residents for _ in people[n][: a.enrol]]
        knocks = [(n, row_of[f]) for n in residents for f in people[n][a.enrol : a.enrol + a.attempts]]
        p_idx = [i for _, i in knocks] + [row_of[f] for f in stranger_files]
        p_ids = [n for n, _ in knocks] + [f.parent.name for f in stranger_files]
        out = {}
        for rule, th in rules.items():
            o = open_set_identification(emb[g_idx], g_ids, emb[p_idx], p_ids, th)
            k, m = o["n_genuine"], o["n_impostor"]
            out[rule] = {"threshold": th, "resident_attempts": k, "stranger_attempts": m,
                         "in_as_themselves": round(o["dir"] * k), "refused": round(o["frr"] * k),
                         "in_as_someone_else": round(o["misid"] * k), "strangers_in": round(o["far"] * m)}
        return out

    def rules_for(templates: int) -> dict[str, float]:
        """Each rule's threshold for a gallery of `templates`, asked from the app itself."""
        return {t: AccessControl(a.run_dir, state_dir=state, threshold=t).threshold_for(templates)
                for t in THRESHOLDS}

    def rates(total: dict[str, dict]) -> list[dict]:
        rows = []
        for rule, c in total.items():
            k, m = c["resident_attempts"], c["stranger_attempts"]
            rows.append({"rule": rule, "threshold": round(c["threshold"], 4), "resident_attempts": k,
                         "stranger_attempts": m,
                         "residents_in_as_themselves": c["in_as_themselves"] / k, "residents_refused": c["refused"] / k,
                         "residents_in_as_someone_else": c["in_as_someone_else"] / k,
                         "strangers_let_in": c["strangers_in"] / m})
        return rows

    # the teacher (stored dlib embeddings of the same chips), same rule, its own impostor tail: the reference
    t_emb, t_tail = None, None
    npz = a.lfw / "dlib_resnet128.npz"
    if npz.is_file():
        from atalaia.evaluate.verification import impostor_tail, open_set_threshold

        with np.load(npz) as z:
            by_name = {Path(str(c)).name: e for c, e in zip(z["chip"], z["emb"], strict=True)}
        if all(f.name in by_name for f in files):
            t_emb = np.stack([by_name[f.name] for f in files]).astype(np.float32)
            t_emb /= np.linalg.norm(t_emb, axis=1, keepdims=True)
            t_tail = impostor_tail(t_emb, [f.parent.name for f in files])

    def teacher_rules(templates: int) -> dict[str, float]:
        return {t: open_set_threshold(t_tail, templates, far)[0] for t, far in OPEN_SET.items()}

    draws = [([pool[i] for i in rng.permutation(len(pool))[: a.household]],
              [strangers[i] for i in rng.permutation(len(strangers))[: a.stranger_knocks]])
             for _ in range(a.households)]
    scenarios = {}
    for model, e, rules_of in (("student int8", emb, rules_for), ("teacher dlib", t_emb, teacher_rules)):
        if e is None:
            continue
        # a household: `--household` residents, many random draws; strangers knock `--stranger-knocks` times
        total: dict[str, dict] = {}
        rules = rules_of(a.household * a.enrol)
        for res, st in draws:
            for rule, c in scenario(e, res, st, rules).items():
                t = total.setdefault(rule, {k: 0 for k in c} | {"threshold": c["threshold"]})
                for key in ("resident_attempts", "stranger_attempts", "in_as_themselves", "refused",
                            "in_as_someone_else", "strangers_in"):
                    t[key] += c[key]
        scenarios[f"{model} / household_{a.household}"] = {
            "households": a.households, "templates": a.household * a.enrol, "rows": rates(total)}
        # everyone with >= min_images enrolled at once (the report's open-set setting)
        scenarios[f"{model} / building_{len(pool)}"] = {
            "households": 1, "templates": len(pool) * a.enrol,
            "rows": rates(scenario(e, pool, strangers, rules_of(len(pool) * a.enrol)))}
    # one real enrol + check through the public methods: the same decision as the vectorised rule
    ac.enrol(pool[0], people[pool[0]][: a.enrol])
    d = ac.check(people[pool[0]][a.enrol])
    e0 = emb[[row_of[f] for f in people[pool[0]][: a.enrol]]] @ emb[row_of[people[pool[0]][a.enrol]]]
    assert abs(d.score - float(e0.max())) < 1e-4, (d, e0)
    doc = {"benchmark": "access_control", "tier": a.tier, "run_dir": str(a.run_dir), "model_sha256": ac.model_sha256,
           "enrol_per_resident": a.enrol, "attempts_per_resident": a.attempts,
           "rule": "1-NN cosine over all templates, granted when >= threshold (atalaia.face.access)",
           "caveat": "thresholds and impostor tail were measured on LFW: an in-distribution check of the app, "
                     "not a fresh FAR estimate for another population",
           "host_ms_per_image_int8_litert": round(1e3 * embed_s / max(len(files), 1), 3),
           "scenarios": scenarios,
           "machine": {"python": sys.version.split()[0], "platform": platform.platform()}}
    atomic_write_json(a.out, doc)
    for name, sc in scenarios.items():
        print(f"{name} ({sc['templates']} templates, {sc['households']} draw(s)):")
        for r in sc["rows"]:
            print(f"  {r['rule']:>13} ({r['threshold']:.3f}): residents in as themselves "
                  f"{100 * r['residents_in_as_themselves']:.1f}%, refused {100 * r['residents_refused']:.1f}%, "
                  f"in as someone else {100 * r['residents_in_as_someone_else']:.2f}%; strangers in "
                  f"{100 * r['strangers_let_in']:.2f}%")
    return doc


if __name__ == "__main__":
    main()
