"""Thesis Table 2, in kind: `code3` through magnitude pruning and int8 on the CelebA closed-set task.

Rows as in the thesis: base (Keras float) / pruned (Keras float, unstructured magnitude pruning + fine-tune) /
pruned TFLite float / pruned int8 (full-integer PTQ), plus a channel-pruned int8 row (structured pruning: the
kind that does shrink what a microcontroller stores). Columns: test accuracy with its Wilson 95% interval,
macro-F1 (bootstrap 95%), the paired difference to the base row (paired bootstrap, McNemar p), the weight
sparsity, **flash as flashed** (bytes of the `.tflite`; float32 for the float rows, Keras rows are given their
float32 `.tflite`) and, beside it, the **gzip size** of the same file. Unstructured zeros leave the flashed
bytes unchanged (TFLM has no sparse kernels); only a compressed file gets smaller — so a "size after removing
the zeros" is a compressed-file figure, not what the MCU stores.

Same task and split as `thesis_table1.py` (100 CelebA identities, 40x40 grey, split [0.6, 0.2, 0.2], seed 42+i).

    .venv/bin/python benchmarks/thesis_table2.py --quick       # smoke: 1 seed, 2 + 1 epochs
    .venv/bin/python benchmarks/thesis_table2.py --seeds 3 --epochs 40 --prune-epochs 10
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
from atalaia.evaluate.profile import gzip_size  # noqa: E402
from atalaia.ioutil import atomic_write_json, atomic_write_text  # noqa: E402

ROWS = ("base", "pruned", "pruned TFLite float", "pruned int8", "channel-pruned int8")


def run_seed(seed: int, task, args) -> dict:
    import keras

    from atalaia.compress import prune
    from atalaia.compress.distill import train_classifier
    from atalaia.deploy.tflite import convert_float, convert_int8
    from atalaia.evaluate.profile import count_params
    from atalaia.models import create_model

    split, _ = tc.split_for(task, seed)
    k = task.dataset.num_classes
    y = split.test.labels
    shape = (args.image_size, args.image_size, 1)
    cfg = tc.train_config(args.epochs, args.lr)
    out: dict[str, dict] = {}
    preds: dict[str, np.ndarray] = {}

    def row(name, pred, blob, model=None, sparsity=None, extra=None):
        r = tc.score(y, pred, k) | {"flash_bytes": len(blob), "gzip_bytes": gzip_size(blob),
                                    "sparsity": sparsity, "tflite": "int8" if "int8" in name else "float32"}
        if model is not None:
            r["params"] = int(count_params(model))
        out[name] = r | (extra or {})
        preds[name] = pred

    t0 = time.perf_counter()
    base = create_model("code3", num_classes=k, input_shape=shape)
    train_classifier(base, split, cfg, augment=tc.AUGMENTS[args.augment], seed=seed)
    base_blob = convert_float(base)
    row("base", tc.keras_predict(base, split.test.images), base_blob, base,
        float(prune.sparsity_report(base)["overall"]))

    # unstructured magnitude pruning + fine-tune (labels), as the pipeline's pruned_magnitude stage does
    m = keras.models.clone_model(base)
    m.set_weights(base.get_weights())
    steps = int(np.ceil(len(split.train.labels) / min(cfg.batch_size, len(split.train.labels))))
    total = max(1, args.prune_epochs * steps)
    schedule = prune.PolynomialDecay(initial_sparsity=0.0, final_sparsity=args.sparsity, begin_step=0,
                                     end_step=max(1, int(0.8 * total)), frequency=max(1, steps // 4))
    pruner = prune.MagnitudePruner(m, schedule)
    train_classifier(m, split, cfg, augment=tc.AUGMENTS[args.augment], epochs=args.prune_epochs,
                     learning_rate=cfg.learning_rate * 0.3, seed=seed + 3,
                     callbacks=[prune.PruningCallback(pruner)], restore_best=False)
    pruner.update(schedule.end_step)
    pruner.apply()
    pruner.strip()
    sp = float(prune.sparsity_report(m)["overall"])
    pruned_float = convert_float(m)
    row("pruned", tc.keras_predict(m, split.test.images), pruned_float, m, sp,
        {"note": "Keras model; flash/gzip of its float32 .tflite"})
    row("pruned TFLite float", tc.tflite_predict(pruned_float, split.test.images), pruned_float, m, sp)
    pruned_q = convert_int8(m, tc.representative(split))
    row("pruned int8", tc.tflite_predict(pruned_q, split.test.images), pruned_q, m, sp)

    # structured channel pruning + fine-tune + int8
    c, summary = prune.channel_prune(base, args.channel_ratio, "l1")
    train_classifier(c, split, cfg, augment=tc.AUGMENTS[args.augment], epochs=args.prune_epochs, seed=seed + 4)
    c_q = convert_int8(c, tc.representative(split))
    row("channel-pruned int8", tc.tflite_predict(c_q, split.test.images), c_q, c,
        float(prune.sparsity_report(c)["overall"]), {"channel_ratio": args.channel_ratio})
    # paired difference of every row to the base row, on the same test images
    for name in ROWS[1:]:
        d = paired_bootstrap(y, preds["base"], preds[name], n_boot=1000, seed=seed)
        out[name]["vs_base"] = d.to_dict()
    print(f"seed {seed}: " + ", ".join(f"{n} {out[n]['accuracy']['value'] * 100:.2f}% "
                                       f"{out[n]['flash_bytes'] / 1e6:.2f} MB (gz {out[n]['gzip_bytes'] / 1e6:.2f})"
                                       for n in ROWS) + f"  [{time.perf_counter() - t0:.0f}s]", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", default=str(tc.default_chips()))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--prune-epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=tc.learning_rate_for("code3"), help="peak learning rate (AdamW, cosine decay)")
    ap.add_argument("--augment", default="none", choices=sorted(tc.AUGMENTS), help="training augmentation")
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--channel-ratio", type=float, default=0.5)
    ap.add_argument("--image-size", type=int, default=40)
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 seed, 2 epochs, 1 pruning epoch")
    ap.add_argument("--out", default=str(tc.REPO / "benchmarks" / "results" / "thesis_table2"))
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.epochs, args.prune_epochs = 1, 2, 1
    from atalaia.ioutil import import_tensorflow_quietly

    import_tensorflow_quietly()
    t_start = time.perf_counter()
    task = tc.load_task(args.chips, args.image_size)
    seeds = [42 + i for i in range(args.seeds)]
    result = {"quick": bool(args.quick), "complete": False, "seeds": seeds, "epochs": args.epochs,
              "learning_rate": args.lr, "augment": args.augment, "command": " ".join(sys.argv),
              "prune_epochs": args.prune_epochs,
              "sparsity_target": args.sparsity, "channel_ratio": args.channel_ratio,
              "task": task.summary() | {"source": str(args.chips)}, "split": list(tc.SPLIT),
              "per_seed": {}, "machine": tc.machine()}
    out = Path(args.out)
    for seed in seeds:  # written after every seed: a run cut short keeps its finished seeds
        result["per_seed"][seed] = run_seed(seed, task, args)
        result["complete"] = seed == seeds[-1]
        result["seeds_done"] = list(result["per_seed"])
        result["wall_seconds"] = round(time.perf_counter() - t_start, 1)
        atomic_write_json(out.with_suffix(".json"), result)
        atomic_write_text(out.with_suffix(".md"), render(result))
    print(json.dumps({"written": [str(out.with_suffix(".json")), str(out.with_suffix(".md"))],
                      "wall_seconds": result["wall_seconds"]}))
    return 0


def render(r: dict) -> str:
    lines = []
    if r["quick"]:
        lines.append(f"**QUICK SMOKE RUN** ({r['epochs']} epochs + {r['prune_epochs']} pruning epoch, "
                     f"{len(r['seeds'])} seed): these numbers only show the script works; they rank nothing.\n")
    if not r.get("complete", True):
        lines.append(f"**PARTIAL**: seeds done {r.get('seeds_done')} of {r['seeds']}.\n")
    t = r["task"]
    lines.append(f"Training: {r['epochs']} epochs, AdamW (cosine decay) peak lr {r['learning_rate']:g}, augmentation "
                 f"`{r.get('augment', 'default')}`; magnitude pruning and channel-pruning fine-tunes {r['prune_epochs']} "
                 "epochs each.")
    lines.append(f"`code3` on {t['identities']} CelebA identities, {t['images']} grey "
                 f"{t['config']['image_size']}x{t['config']['image_size']} chips, split {r['split']}, seeds "
                 f"{r.get('seeds_done', r['seeds'])}; magnitude pruning to {r['sparsity_target']:.0%} sparsity, channel pruning ratio "
                 f"{r['channel_ratio']}.\n")
    lines.append("| row | accuracy (%) | 95% CI (first seed, Wilson) | macro-F1 (%) | vs base (pp, paired 95% CI, "
                 "McNemar p) | weight sparsity | flash as flashed (KB) | gzip of the same file (KB) |")
    lines.append("|---|---|---|---|---|---|---|---|")
    seeds = list(r["per_seed"].values())
    for name in ROWS:
        rs = [s[name] for s in seeds]
        a0 = rs[0]["accuracy"]
        acc = tc.pm([x["accuracy"]["value"] for x in rs])
        f1 = tc.pm([x["macro_f1"]["value"] for x in rs])
        vs = ""
        if rs[0].get("vs_base"):
            v = rs[0]["vs_base"]
            d = v["diff"]
            vs = (f"{d['value'] * 100:+.2f} [{d['low'] * 100:+.2f}, {d['high'] * 100:+.2f}], p={v['p_value']:.3g}"
                  f" ({'significant' if v['significant'] else 'not significant'})")
        kind = "float32" if rs[0]["tflite"] == "float32" else "int8"
        lines.append(f"| {name} | {acc} | [{a0['low'] * 100:.1f}, {a0['high'] * 100:.1f}] | {f1} | {vs} | "
                     f"{rs[0]['sparsity']:.1%} | {rs[0]['flash_bytes'] / 1000:,.1f} ({kind}) | "
                     f"{rs[0]['gzip_bytes'] / 1000:,.1f} |")
    lines.append("")
    lines.append("flash = bytes of the `.tflite` the MCU would store (Keras rows: their float32 `.tflite`). gzip = the "
                 "same file gzip-compressed (level 9): unstructured zeros shrink only this column; TFLM has no sparse "
                 "kernels, so a 'size after removing the zeros' is a compressed-file size, not flash. Accuracy: mean ± "
                 "std over seeds (one value for one seed); 'vs base' is paired over the first seed's test images. "
                 f"Wall time {r['wall_seconds'] / 60:.1f} min on {r['machine']['cpus']} CPUs.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
