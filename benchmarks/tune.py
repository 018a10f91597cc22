"""Samplers at an equal trial budget: best VALIDATION accuracy found by TPE / GP vs random search vs the thesis grid.

Usage:
    .venv/bin/python benchmarks/tune.py [--trials 6] [--epochs 4] [--teacher-epochs 12] [--seeds 0 1 2]
                                        [--samplers tpe gp random grid] [--work DIR] [--out JSON]

Every run trains the same student on the default recipe's data (bundled ORL faces, the pipeline's split) with
the same training seed; only the sampler and its seed change, so differences come from where each sampler
looks. One teacher is trained once (with `--teacher-epochs`) and shared by all runs. Per-epoch pruning is off
(`pruner="none"`) so every sampler spends exactly `trials` full trainings. tpe/gp/random search continuous
alpha in [0.01, 0.9] x T in [1, 20]; grid samples `trials` points of the thesis grid (alpha in
{0.01, 0.1, 0.25, 0.5} x T in {2, 5, 7, 10, 12, 15, 17, 20}) without replacement, in a seeded random order.

Writes benchmarks/results/tune.json after every run (so a stopped benchmark keeps its finished runs): the
settings, every run's best val accuracy, trial values and wall time, and per sampler mean / std / min / max
over seeds and the mean wall time per trial. The test split is never used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from atalaia.config import load_recipe  # noqa: E402
from atalaia.ioutil import atomic_write_json  # noqa: E402
from atalaia.tune import SearchSpace, tune  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def summarise(runs: list[dict]) -> dict:
    out = {}
    for s in sorted({r["sampler"] for r in runs}):
        rs = [r for r in runs if r["sampler"] == s]
        best = [r["best_val_accuracy"] for r in rs]
        per_trial = [r["seconds_per_trial"] for r in rs if r["seconds_per_trial"]]
        out[s] = {"seeds": [r["seed"] for r in rs], "n": len(rs),
                  "best_val_accuracy_mean": statistics.fmean(best),
                  "best_val_accuracy_std": statistics.stdev(best) if len(best) > 1 else 0.0,
                  "best_val_accuracy_min": min(best), "best_val_accuracy_max": max(best),
                  "seconds_per_trial_mean": statistics.fmean(per_trial) if per_trial else None}
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=4, help="epochs per trial")
    ap.add_argument("--teacher-epochs", type=int, default=12)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--samplers", nargs="+", default=["tpe", "gp", "random", "grid"])
    ap.add_argument("--work", type=Path, default=REPO / "benchmarks" / ".work" / "tune")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "tune.json")
    a = ap.parse_args(argv)

    recipe = load_recipe(None, {"train.epochs": a.teacher_epochs})
    a.work.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(a.work / 'bench.db').resolve()}"
    settings = {
        "recipe": "bundled default (ORL faces, 40 identities, 32x32 grey, split 0.6/0.2/0.2, seed 42)",
        "student": recipe.student.name, "teacher": recipe.teacher.name,
        "teacher_epochs": a.teacher_epochs, "epochs_per_trial": a.epochs, "trials_per_run": a.trials,
        "seeds": a.seeds, "samplers": a.samplers, "pruner": "none",
        "objective": "best-epoch validation accuracy of the distilled student (test split never used)",
        "continuous_space": SearchSpace().to_dict(), "grid_space": SearchSpace.thesis().to_dict(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared with other jobs while running)",
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    runs: list[dict] = []
    comparable = ("teacher_epochs", "epochs_per_trial", "trials_per_run", "pruner")
    if a.out.is_file():  # resume: keep finished runs made with the same settings (studies resume in bench.db)
        old = json.loads(a.out.read_text())
        if all(old["settings"].get(k) == settings[k] for k in comparable):
            runs = old["runs"]
            settings["started"] = old["settings"].get("started", settings["started"])
    t_all = time.perf_counter() - (json.loads(a.out.read_text()).get("total_wall_s", 0) if runs else 0)
    for seed in a.seeds:  # seed-major order: a stopped benchmark still has whole seeds for every sampler
        for sampler in a.samplers:
            if any(r["sampler"] == sampler and r["seed"] == seed for r in runs):
                continue
            name = f"bench-{sampler}-s{seed}-t{a.trials}-e{a.epochs}"
            space = SearchSpace.thesis() if sampler == "grid" else SearchSpace()
            t0 = time.perf_counter()
            res = tune(recipe, trials=a.trials, study_name=name, storage=storage, sampler=sampler,
                       search_space=space, out_dir=a.work, epochs=a.epochs, seed=seed, pruner="none",
                       save=False, log=lambda m: print(m, flush=True))
            vals = [t["values"][0] for t in res.trials if t["state"] == "COMPLETE"]
            runs.append({"sampler": sampler, "seed": seed, "best_val_accuracy": max(vals),
                         "best_params": res.best_params, "trial_values": vals,
                         "wall_s": round(time.perf_counter() - t0, 1),
                         "seconds_per_trial": res.seconds_per_trial})
            print(f"== {sampler} seed {seed}: best val {100 * max(vals):.2f}% "
                  f"({res.seconds_per_trial or 0:.1f} s/trial)", flush=True)
            settings["seeds_done"] = sorted({r["seed"] for r in runs})
            atomic_write_json(a.out, {"settings": settings, "summary": summarise(runs), "runs": runs,
                                      "total_wall_s": round(time.perf_counter() - t_all, 1)})
    print(json.dumps(summarise(runs), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
