"""Thesis Table 1, in kind: students without and with KD from the `dlib_head` teacher on a CelebA closed-set task.

Task: 100 CelebA identities x 20 chips (LFW-overlap identities and suspect chips left out), grey, centre crop 0.7,
40x40 (Rafael's flatten is then the thesis' 800 features); split [0.6, 0.2, 0.2] per seed (seed i = 42 + i).
Teacher: frozen dlib ResNet embedding -> Dropout(0.2) -> Dense, trained on the training split; its logits are a
table per training image (KD targets for every augmented view of that image).
Students: code2, rafael_base, rafael_1..3, ds_cnn, each trained on labels (alpha = 1) and with KD.
alpha and T for KD are chosen **by the project's tuner** on the **validation** split of the first seed: an Optuna
study (`atalaia.tune`: the `SearchSpace.thesis()` categorical space alpha in {0.01, 0.1, 0.25, 0.5} x T in {2, 5,
7, 10, 12, 15, 17, 20}, the tuner's sampler and median pruner) of `--trials` trials of `--tune-epochs` epochs
each; objective = best validation accuracy. `--sampler grid --trials 32` is the exhaustive thesis grid. The
chosen (alpha, T) is reused for every seed. Same seed, epochs and augmentation with and without KD, so the KD
gain is like for like.
Per row: test accuracy (Wilson 95%) and macro-F1 (bootstrap 95%), params, int8 flash (bytes of the full-int8
.tflite as flashed), and the KD gain with a paired bootstrap interval and McNemar's p over the same test images
(pooled over seeds: every seed's test images are paired within that seed).

Every finished model is written at once (`<out>.json` with `"complete": false` until the last one), so a run cut
short still leaves its finished rows. Models can run in parallel processes with their own `--out` and be merged:

    .venv/bin/python benchmarks/thesis_table1.py --quick        # smoke: 1 seed, 2 epochs, 2 trials
    .venv/bin/python benchmarks/thesis_table1.py --seeds 3 --epochs 30 --trials 6 --tune-epochs 10
    # what fitted an afternoon on the shared machine (README): --epochs 12 --trials 3 --tune-epochs 3 --seeds 2

Training defaults for the tables (probes in `thesis_probes.py`): no augmentation, peak lr 0.001 for the Rafael
students (their Dense(32) head dies at >= 0.003 on 100 classes), 0.003 for the others.
    .venv/bin/python benchmarks/thesis_table1.py --models code2 --out /tmp/t1_code2     # one part ...
    .venv/bin/python benchmarks/thesis_table1.py --merge /tmp/t1_code2.json /tmp/t1_rest.json   # ... merged
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import thesis_common as tc  # noqa: E402

from atalaia.evaluate.intervals import paired_bootstrap  # noqa: E402
from atalaia.ioutil import atomic_write_json, atomic_write_text  # noqa: E402

MODELS = ("code2", "rafael_base", "rafael_1", "rafael_2", "rafael_3", "ds_cnn")


def _train(name: str, split, epochs: int, seed: int, num_classes: int, args,
           table: np.ndarray | None = None, alpha: float = 1.0, temperature: float = 1.0, on_epoch=None):
    from atalaia.compress.distill import train_classifier
    from atalaia.models import create_model

    m = create_model(name, num_classes=num_classes, input_shape=(args.image_size, args.image_size, 1))
    cfg = tc.train_config(epochs, tc.learning_rate_for(name, args.lr))
    h = train_classifier(m, split, cfg, augment=tc.AUGMENTS[args.augment], seed=seed,
                         teacher_logits=table if alpha < 1.0 else None, alpha=alpha, temperature=temperature,
                         on_epoch=on_epoch)
    return m, h


def load_baselines(files: list[str], args, models: list[str]) -> dict:
    """(model, seed) -> baseline row of earlier table JSONs run with the same task settings.

    The labels-only row does not depend on alpha/T, so a new alpha/T search needs only new KD rows. A file is
    refused when its epochs, augmentation, image size or a model's learning rate differ from this run's; the
    test labels are compared per seed when the row is used. Rows without stored predictions are trained again."""
    out = {}
    for f in files:
        r = json.loads(Path(f).read_text())
        lr = r["train"]["learning_rate"]
        checks = {"epochs": (r["epochs"], args.epochs), "augment": (r["augment"]["name"], args.augment),
                  "image size": (r["task"]["config"]["image_size"], args.image_size)}
        bad = [f"{k} {a} != {b}" for k, (a, b) in checks.items() if a != b]
        if bad:
            raise SystemExit(f"--baseline-from {f}: not the same settings as this run ({'; '.join(bad)})")
        for name, rows in r["rows"].items():
            if name not in models:
                continue
            if abs(lr[name] - tc.learning_rate_for(name, args.lr)) > 1e-12:
                raise SystemExit(f"--baseline-from {f}: {name} was trained at lr {lr[name]}, this run uses "
                                 f"{tc.learning_rate_for(name, args.lr)}")
            for row in rows["baseline"]:
                if "pred_test" not in row:  # written before predictions were stored: trained again
                    continue
                out[(name, row["seed"])] = row | {"_file": Path(f).name}
    return out


def tune_kd(name: str, split, table: np.ndarray, args, num_classes: int, seed: int) -> dict:
    """alpha/T on the validation split with the project's tuner pieces (thesis grid space, sampler, pruner)."""
    import optuna

    from atalaia.tune.space import SearchSpace
    from atalaia.tune.study import _pruner, _sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace.thesis()
    study = optuna.create_study(direction="maximize", sampler=_sampler(args.sampler, space, seed, False, args.trials),
                                pruner=_pruner(args.pruner, args.tune_epochs))

    def objective(trial) -> float:
        p = space.suggest(trial)

        def report(epoch: int, acc: float) -> None:
            trial.report(acc, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        _, h = _train(name, split, args.tune_epochs, seed, num_classes, args, table,
                      p["alpha"], p["temperature"], on_epoch=report)
        return float(max(h.val_accuracy))

    study.optimize(objective, n_trials=args.trials)
    done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    best = study.best_trial
    return {"alpha": float(best.params["alpha"]), "temperature": float(best.params["temperature"]),
            "val_accuracy": float(best.value), "tuned_on_seed": seed, "sampler": args.sampler,
            "pruner": args.pruner, "trials_requested": args.trials, "tune_epochs": args.tune_epochs,
            "trials": [{"alpha": t.params["alpha"], "temperature": t.params["temperature"], "state": t.state.name,
                        "val_accuracy": (float(t.value) if t.value is not None else
                                         max(t.intermediate_values.values(), default=None)),
                        "epochs_run": len(t.intermediate_values)} for t in done]}


def run_model(name: str, task, seeds: list[int], teachers: dict, args):
    """Tune on the first seed (unless `--kd` gives alpha:T), then baseline + KD per seed. Yields (chosen, rows,
    pooled KD gain) after every seed, so a run cut short keeps its finished seeds."""
    from atalaia.deploy.tflite import convert_int8
    from atalaia.evaluate.profile import count_params

    k = task.dataset.num_classes
    rows: dict[str, list] = {"baseline": [], "kd": []}
    pairs = []
    chosen: dict = {}
    for si, seed in enumerate(seeds):
        split, table = teachers[seed]["split"], teachers[seed]["table"]
        y = split.test.labels
        t0 = time.perf_counter()
        if si == 0 and args.kd:
            a, t = (float(v) for v in args.kd.split(":"))
            chosen = {"alpha": a, "temperature": t, "source": args.kd_note or "given with --kd (not tuned here)"}
        elif si == 0:
            chosen = tune_kd(name, split, table, args, k, seed)
            chosen["tune_seconds"] = round(time.perf_counter() - t0, 1)
            print(f"  {name}: tuned alpha {chosen['alpha']}, T {chosen['temperature']} (val "
                  f"{chosen['val_accuracy'] * 100:.2f}%, {len(chosen['trials'])} trials) "
                  f"[{chosen['tune_seconds']:.0f}s]", flush=True)
        reused = args.baselines.get((name, seed))
        if reused is not None:  # the labels-only row does not depend on alpha/T: take it from an earlier run
            if reused["y_test"] != y.tolist():
                raise SystemExit(f"--baseline-from: {name} seed {seed} was scored on other test images "
                                 f"({reused['_file']}); it is not the same split")
            pred_b = np.asarray(reused["pred_test"], np.int64)
            best_b = {"best_epoch": reused["best_epoch"], "val_accuracy": reused["val_accuracy"]}
        else:
            base, hb = _train(name, split, args.epochs, seed, k, args)
            pred_b = tc.keras_predict(base, split.test.images)
            best_b = {"best_epoch": hb.best_epoch, "val_accuracy": max(hb.val_accuracy)}
        kd, hk = _train(name, split, args.epochs, seed, k, args, table,
                        chosen["alpha"], chosen["temperature"])
        pred_k = tc.keras_predict(kd, split.test.images)
        blob = convert_int8(kd, tc.representative(split))
        pred_q = tc.tflite_predict(blob, split.test.images)
        diff = paired_bootstrap(y, pred_b, pred_k, n_boot=1000, seed=seed)
        common = {"seed": seed, "params": int(count_params(kd)), "int8_flash_bytes": len(blob)}
        rows["baseline"].append(common | tc.score(y, pred_b, k) | best_b | {
            "y_test": y.tolist(), "pred_test": pred_b.tolist()}
            | ({"reused_from": reused["_file"]} if reused is not None else {}))
        rows["kd"].append(common | tc.score(y, pred_k, k) | {
            "best_epoch": hk.best_epoch, "val_accuracy": max(hk.val_accuracy),
            "int8": tc.score(y, pred_q, k), "kd_gain": diff.to_dict(), "pred_test": pred_k.tolist()})
        pairs.append((y, pred_b, pred_k))
        print(f"  {name:12s} seed {seed} base {np.mean(pred_b == y) * 100:6.2f}  KD {np.mean(pred_k == y) * 100:6.2f}"
              f"  int8 {np.mean(pred_q == y) * 100:6.2f} ({len(blob)} B)  gain {diff.fmt()}  "
              f"[{time.perf_counter() - t0:.0f}s]", flush=True)
        ya, pb, pk = (np.concatenate([p[i] for p in pairs]) for i in range(3))
        yield chosen, rows, paired_bootstrap(ya, pb, pk, n_boot=2000).to_dict()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", default=str(tc.default_chips()), help="chip-set folder (labels.csv + chips)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=42, help="seeds are first-seed, first-seed + 1, ...")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--image-size", type=int, default=40)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 seed, 2 epochs, 2 trials of 1 epoch")
    ap.add_argument("--lr", type=float, default=None,
                    help="peak learning rate for every student (default: per student, tc.LEARNING_RATES)")
    ap.add_argument("--augment", default="none", choices=sorted(tc.AUGMENTS), help="training augmentation")
    ap.add_argument("--sampler", default="tpe", choices=("tpe", "random", "grid"), help="the tuner's sampler")
    ap.add_argument("--pruner", default="median", choices=("median", "hyperband", "none"))
    ap.add_argument("--trials", type=int, default=6, help="tuner trials per student (32 = the whole grid)")
    ap.add_argument("--tune-epochs", type=int, default=10, help="epochs per tuner trial")
    ap.add_argument("--kd", default=None, help="'alpha:T': skip tuning and use this point (say why in --kd-note)")
    ap.add_argument("--kd-note", default=None, help="where a --kd point comes from (written to the JSON)")
    ap.add_argument("--baseline-from", nargs="+", default=[],
                    help="table JSONs whose labels-only rows (same settings, seeds) are reused instead of retrained")
    ap.add_argument("--merge", nargs="+", default=None, help="merge part JSONs (from --out) into --out; no training")
    ap.add_argument("--out", default=str(tc.REPO / "benchmarks" / "results" / "thesis_table1"))
    args = ap.parse_args()
    out = Path(args.out)
    if args.merge:
        return merge([Path(p) for p in args.merge], out)
    if args.quick:
        args.seeds, args.epochs, args.trials, args.tune_epochs = 1, 2, 2, 1
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    from atalaia.ioutil import import_tensorflow_quietly

    import_tensorflow_quietly()
    t_start = time.perf_counter()
    args.baselines = load_baselines(args.baseline_from, args, models)
    task = tc.load_task(args.chips, args.image_size)
    seeds = [args.first_seed + i for i in range(args.seeds)]
    teachers, per_seed = {}, {}
    for seed in seeds:
        split, emb = tc.split_for(task, seed)
        _, tinfo = tc.teacher_for(task, split, emb, seed, tc.REPO / "runs" / "cache" / "table1_dlib.npz")
        teachers[seed] = {"split": split, "table": tinfo.pop("train_logits")}
        per_seed[seed] = {"teacher": tinfo, "n_train": len(split.train.labels), "n_val": len(split.val.labels),
                          "n_test": len(split.test.labels)}
        print(f"seed {seed}: dlib_head teacher test {tinfo['test']['accuracy']['value'] * 100:.2f}%", flush=True)
    result = {
        "quick": bool(args.quick), "complete": False, "seeds": seeds, "epochs": args.epochs,
        "tuner": {"space": "SearchSpace.thesis() (alpha x T, categorical)", "sampler": args.sampler,
                  "pruner": args.pruner, "trials": args.trials, "tune_epochs": args.tune_epochs,
                  "objective": "best validation accuracy (first seed)"},
        "task": task.summary() | {"source": str(args.chips)}, "split": list(tc.SPLIT),
        "train": tc.train_config(args.epochs).__dict__ | {"learning_rate": {
            m: tc.learning_rate_for(m, args.lr) for m in models}},
        "augment": {"name": args.augment, "config": getattr(tc.AUGMENTS[args.augment], "__dict__", None)},
        "teacher": per_seed, "chosen_kd": {}, "rows": {}, "kd_gain_pooled": {}, "model_seconds": {},
        "machine": tc.machine(), "command": " ".join(sys.argv),
    }
    for name in models:
        t0 = time.perf_counter()
        for chosen, rows, pooled in run_model(name, task, seeds, teachers, args):
            result["chosen_kd"][name], result["rows"][name], result["kd_gain_pooled"][name] = chosen, rows, pooled
            result["model_seconds"][name] = round(time.perf_counter() - t0, 1)
            result["complete"] = name == models[-1] and len(rows["kd"]) == len(seeds)
            result["wall_seconds"] = round(time.perf_counter() - t_start, 1)
            _write(out, result)
    print(json.dumps({"written": [str(p) for p in _paths(out)], "wall_seconds": result["wall_seconds"]}))
    return 0


def _paths(out: Path) -> tuple[Path, Path]:
    """`<out>.json`, `<out>.md`; a dotted name (`thesis_table1.part_a`) keeps its dot (no with_suffix)."""
    base = str(out)[:-5] if str(out).endswith(".json") else str(out)
    return Path(base + ".json"), Path(base + ".md")


def _write(out: Path, result: dict) -> None:
    js, md = _paths(out)
    atomic_write_json(js, result)
    atomic_write_text(md, render(result))


def merge(parts: list[Path], out: Path) -> int:
    """One table from part JSONs of the same task/seeds/settings (models run in parallel processes)."""
    rs = [json.loads(p.read_text()) for p in parts]
    same = ("epochs", "tuner", "augment", "split")  # seeds may differ per part (said per row)

    def train_wo_lr(r: dict) -> dict:
        return {k: v for k, v in r["train"].items() if k != "learning_rate"}

    for p, r in zip(parts[1:], rs[1:], strict=True):
        bad = [k for k in same if r[k] != rs[0][k]] + (["train"] if train_wo_lr(r) != train_wo_lr(rs[0]) else [])
        if bad:
            raise SystemExit(f"{p}: differs from {parts[0]} in {', '.join(bad)}; merge only parts of one run")
    m = dict(rs[0])
    m["train"] = train_wo_lr(rs[0]) | {"learning_rate": {k: v for r in rs for k, v in r["train"]["learning_rate"].items()}}
    for key in ("chosen_kd", "rows", "kd_gain_pooled", "model_seconds"):
        m[key] = {}
    for p, r in zip(parts, rs, strict=True):  # a model may come in several parts (seeds run in parallel)
        for name, rows in r["rows"].items():
            if name not in m["rows"]:
                m["rows"][name], m["chosen_kd"][name] = {"baseline": [], "kd": []}, r["chosen_kd"][name]
                m["model_seconds"][name] = 0.0
            ch, new = m["chosen_kd"][name], r["chosen_kd"][name]
            if (ch["alpha"], ch["temperature"]) != (new["alpha"], new["temperature"]):
                raise SystemExit(f"{p}: {name} was run with another alpha/T than in an earlier part")
            if "trials" in new:  # keep the part that tuned as the record of the choice
                m["chosen_kd"][name] = new
            for kd in ("baseline", "kd"):
                m["rows"][name][kd] = sorted(m["rows"][name][kd] + rows[kd], key=lambda e: e["seed"])
            m["model_seconds"][name] += r["model_seconds"][name]
    for name, rows in m["rows"].items():
        seeds = [e["seed"] for e in rows["kd"]]
        if len(set(seeds)) != len(seeds):
            raise SystemExit(f"{name}: seed(s) {seeds} appear in more than one part")
        m["kd_gain_pooled"][name] = pooled_from_counts([e["kd_gain"] for e in rows["kd"]])
    order = [n for n in MODELS if n in m["rows"]] + [n for n in m["rows"] if n not in MODELS]
    for key in ("chosen_kd", "rows", "kd_gain_pooled", "model_seconds"):
        m[key] = {n: m[key][n] for n in order}
    m["seeds"] = sorted({s for r in rs for s in r["seeds"]})
    m["complete"] = all(n in m["rows"] and len(m["rows"][n]["kd"]) == len(m["seeds"]) for n in MODELS)
    m["teacher"] = {k: v for r in rs for k, v in r["teacher"].items()}
    m["parts"] = [{"file": p.name, "command": r.get("command"), "wall_seconds": r.get("wall_seconds")}
                  for p, r in zip(parts, rs, strict=True)]
    m["wall_seconds"] = max(r.get("wall_seconds", 0) for r in rs)
    _write(out, m)
    print(json.dumps({"merged": [str(p) for p in parts], "written": str(_paths(out)[0])}))
    return 0


def pooled_from_counts(gains: list[dict]) -> dict:
    """Pooled paired KD gain from each seed's discordant counts. The accuracy difference, its paired bootstrap
    over test images and McNemar's test depend on the images only through (baseline-only right, KD-only right,
    n), so summing them over seeds loses nothing (parts written before predictions were stored have only these)."""
    a = sum(g["a_only"] for g in gains)
    b = sum(g["b_only"] for g in gains)
    n = sum(g["n"] for g in gains)
    y = np.zeros(n, np.int64)
    pred_a = np.zeros(n, np.int64)
    pred_b = np.zeros(n, np.int64)
    pred_a[:b] = 1  # KD right, baseline wrong
    pred_b[b:b + a] = 1  # baseline right, KD wrong
    d = paired_bootstrap(y, pred_a, pred_b, n_boot=2000).to_dict()
    return d | {"pooled_from": "per-seed discordant counts"}


def render(r: dict) -> str:
    lines = []
    tu = r["tuner"]
    if r["quick"]:
        lines.append(f"**QUICK SMOKE RUN** ({r['epochs']} epochs, {len(r['seeds'])} seed, {tu['trials']} tuner "
                     "trials): these numbers only show the script works; they rank nothing.\n")
    missing = [m for m in MODELS if m not in r["rows"]]
    short = [m for m, rr in r["rows"].items() if len(rr["kd"]) < len(r["seeds"])]
    if missing or short or not r.get("complete"):
        lines.append("**PARTIAL**: " + "; ".join(filter(None, [
            f"not run: {', '.join(missing)}" if missing else "",
            f"fewer seeds than {r['seeds']}: {', '.join(short)}" if short else "",
            "" if missing or short else "a part stopped before its last model"])) + ".\n")
    t = r["task"]
    lines.append(f"Task: {t['identities']} identities, {t['images']} grey {t['config']['image_size']}x"
                 f"{t['config']['image_size']} chips (crop {t['config']['crop']}), split {r['split']}, seeds "
                 f"{r['seeds']}; LFW-overlap identities left out: {', '.join(t['excluded_lfw_overlap']) or 'none'}.")
    tr = r["train"]
    lrs = ", ".join(f"{m} {v:g}" for m, v in tr["learning_rate"].items())
    lines.append(f"Training: {r['epochs']} epochs, AdamW (cosine decay) peak lr {lrs}, batch {tr['batch_size']}, "
                 f"augmentation `{r['augment']['name']}`; weights of the best validation epoch.")
    lines.append(f"alpha/T: Optuna over the thesis grid ({tu['space']}), sampler `{tu['sampler']}`, pruner "
                 f"`{tu['pruner']}`, {tu['trials']} trials x {tu['tune_epochs']} epochs per student on the first "
                 "seed's validation split (the full grid is 32 points); the chosen point is reused for every seed.")
    teach = [v["teacher"]["test"]["accuracy"]["value"] for v in r["teacher"].values()]
    lines.append(f"Teacher `dlib_head` (frozen dlib ResNet -> Dropout(0.2) -> Dense) test accuracy: "
                 f"{tc.pm(teach)}% (first seed, Wilson 95%: {_iv(next(iter(r['teacher'].values())))}).\n")
    lines.append("| model | KD? | accuracy (%) | 95% CI (first seed, Wilson) | macro-F1 (%) | alpha | T | params | "
                 "int8 flash (KB) | int8 accuracy (%) | KD gain (pp, paired 95% CI, McNemar p) |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, rr in r["rows"].items():
        ch = r["chosen_kd"][name]
        for kd in ("baseline", "kd"):
            seeds = rr[kd]
            acc = [s["accuracy"]["value"] for s in seeds]
            f1 = [s["macro_f1"]["value"] for s in seeds]
            a0 = seeds[0]["accuracy"]
            ci = f"[{a0['low'] * 100:.1f}, {a0['high'] * 100:.1f}]"
            if kd == "kd":
                g = r["kd_gain_pooled"][name]
                d = g["diff"]
                tag = "significant" if g["significant"] else "not significant"
                gain = (f"{d['value'] * 100:+.2f} [{d['low'] * 100:+.2f}, {d['high'] * 100:+.2f}], "
                        f"p={g['p_value']:.3g} ({tag})")
                alpha, temp = ch["alpha"], f"{ch['temperature']:g}"
                q = tc.pm([s["int8"]["accuracy"]["value"] for s in seeds])
            else:
                gain, alpha, temp, q = "", "1 (labels only)", "—", ""
            label = name if len(seeds) == len(r["seeds"]) else f"{name} ({len(seeds)} seed{'s' * (len(seeds) > 1)})"
            lines.append(f"| {label} | {'yes' if kd == 'kd' else 'no'} | {tc.pm(acc)} | {ci} | {tc.pm(f1)} | "
                         f"{alpha} | {temp} | {seeds[0]['params']:,} | {seeds[0]['int8_flash_bytes'] / 1000:.1f} | "
                         f"{q} | {gain} |")
    lines.append("")
    for name, ch in r["chosen_kd"].items():
        if "source" in ch:
            lines.append(f"{name}: alpha/T not tuned in this part: {ch['source']}.\n")
        elif "trials" in ch:
            pruned = sum(t["state"] == "PRUNED" for t in ch["trials"])
            tried = sorted({(t["alpha"], t["temperature"]) for t in ch["trials"]})
            lines.append(f"{name}: {len(ch['trials'])} trials x {ch['tune_epochs']} epochs ({pruned} pruned), "
                         f"{len(tried)} of the 32 grid points tried; best validation accuracy "
                         f"{ch['val_accuracy'] * 100:.2f}% at alpha {ch['alpha']:g}, T {ch['temperature']:g} "
                         f"({ch.get('tune_seconds', 0) / 60:.1f} min).\n")
    reused = sorted({row["reused_from"] for rr in r["rows"].values() for row in rr["baseline"] if "reused_from" in row})
    if reused:
        lines.append(f"Labels-only rows (alpha = 1) reused from {', '.join(reused)}: same task, split, epochs and "
                     "learning rate; they do not depend on alpha/T, so only the KD rows were trained again.\n")
    lines.append("accuracy / macro-F1: mean ± std over seeds (one value when one seed), Keras float model. int8 "
                 "flash = bytes of the full-int8 `.tflite` of the KD student as flashed (not gzip); int8 accuracy = "
                 "that file on the test images (LiteRT). KD gain = KD - baseline, paired over the same test images, "
                 "pooled over seeds; 'not significant' when its interval contains 0. "
                 f"Wall time {r['wall_seconds'] / 60:.1f} min{' (longest part)' if r.get('parts') else ''} on "
                 f"{r['machine']['cpus']} shared CPUs.")
    return "\n".join(lines) + "\n"


def _iv(seed_entry: dict) -> str:
    a = seed_entry["teacher"]["test"]["accuracy"]
    return f"{a['value'] * 100:.2f} [{a['low'] * 100:.1f}, {a['high'] * 100:.1f}]"


if __name__ == "__main__":
    raise SystemExit(main())
