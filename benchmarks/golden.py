"""Golden metrics: the numbers a refactor must not move, with their tolerances (`benchmarks/golden.json`).

Two kinds of facts:
- **architecture** (exact): params, MACs, flash bytes as flashed, TFLM arena of every model the default recipe and
  the face recipe (`recipes/lfw.yaml`) build. They depend on the code, not on training, so `architecture_facts()`
  computes them from untrained models in about a minute and `tests/pipeline/test_golden.py` checks them on
  every test run.
- **a cold default run** (accuracy within a stated tolerance, the rest exact): `--check RUN_DIR` compares a
  finished run's report.json with golden.json.

    python benchmarks/golden.py --write                  # regenerate golden.json (architecture + a cold default run)
    python benchmarks/golden.py --write --from-run runs/bench-default   # ... from a cold run made already
    python benchmarks/golden.py --check runs/default     # compare a finished default run with golden.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "benchmarks" / "golden.json"
ACCURACY_TOLERANCE = 0.075  # 6 of the default split's 80 test images: CPU training is not bit-reproducible
FLOAT_FLASH_TOLERANCE = 256  # bytes: float .tflite files keep layer names, whose counters vary by process


def architecture_facts() -> dict[str, dict[str, int]]:
    """params / MACs / flash / arena of the default recipe's and the face recipe's models, untrained."""
    import numpy as np

    from atalaia.compress.prune import channel_prune
    from atalaia.config import PACKAGE_DIR, load_recipe
    from atalaia.deploy.tflite import TFLiteRunner, convert_float, convert_int8
    from atalaia.deploy.tflm import check_tflm
    from atalaia.evaluate.profile import count_macs, count_params
    from atalaia.face.train import build_student
    from atalaia.models import create_model

    def randomise(model) -> None:
        """Trained-like weights: no two constant buffers equal (the converter shares identical buffers, so an
        untrained model's all-zero biases would make its file smaller than the trained one's)."""
        rng = np.random.default_rng(0)
        model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) for w in model.get_weights()])

    def row(model, *, int8: bool = False, shape=None) -> dict[str, int]:
        rng = np.random.default_rng(0)
        randomise(model)
        if not int8:
            blob = convert_float(model)
            return {"params": count_params(model), "macs": int(count_macs(blob)["total"]), "flash_bytes": len(blob)}
        rep = rng.uniform(0, 1, (16, *shape)).astype(np.float32)
        rep[0], rep[1] = 0.0, 1.0  # pin the input range to [0, 1] as the pipeline's data does
        blob = convert_int8(model, rep)
        tflm = check_tflm(blob, TFLiteRunner(blob).quantize_input(rep[:2]))
        return {"params": count_params(model), "macs": int(count_macs(blob)["total"]), "flash_bytes": len(blob),
                "arena_bytes": int(tflm.arena_bytes)}

    r = load_recipe(None)
    shape = (*r.data.image_size, r.data.channels)
    n_classes = 40  # the bundled ORL identities
    # the selectable trained-here teacher at the width the recipe used before `dlib_head` became its teacher
    teacher = create_model("teacher_resnet", num_classes=n_classes, input_shape=shape, width=0.5)
    student = create_model(r.student.name, num_classes=n_classes, input_shape=shape, width=r.student.width)
    pruned, _ = channel_prune(student, r.prune.channel.ratio, r.prune.channel.criterion)
    f = load_recipe(PACKAGE_DIR / "recipes" / "lfw.yaml")
    size = f.data.image_size[0]
    face = build_student(size, width=f.student.width, embedding_dim=f.face.embedding_dim, name=f.student.name,
                         head=f.face.student_head)
    return {"default/teacher_resnet": row(teacher), "default/student": row(student), "default/pruned_channel": row(pruned),
            "default/int8": row(pruned, int8=True, shape=shape), "lfw/student": row(face),
            "lfw/int8": row(face, int8=True, shape=(size, size, 1))}


def run_facts(report: dict) -> dict[str, dict]:
    return {s["stage"]: {k: s[k] for k in ("params", "macs", "flash_bytes", "arena_bytes", "accuracy")}
            for s in report["stages"]}


def compare(golden: dict, run: dict[str, dict]) -> list[str]:
    """Differences of a default run's rows against golden.json (empty = within tolerance)."""
    bad = []
    for stage, want in golden["default_run"].items():
        got = run.get(stage)
        if got is None:
            bad.append(f"{stage}: missing")
            continue
        for k in ("params", "macs", "flash_bytes", "arena_bytes"):
            if got[k] != want[k]:
                bad.append(f"{stage}.{k}: {got[k]} != {want[k]}")
        if abs(got["accuracy"] - want["accuracy"]) > golden["tolerance"]["accuracy"]:
            bad.append(f"{stage}.accuracy: {got['accuracy']:.4f} vs {want['accuracy']:.4f} "
                       f"(tolerance {golden['tolerance']['accuracy']})")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", action="store_true", help="regenerate golden.json (runs the default recipe cold)")
    g.add_argument("--check", metavar="RUN_DIR", help="compare a finished default run with golden.json")
    ap.add_argument("--out", default=str(REPO / "runs" / "golden-default"))
    ap.add_argument("--from-run", metavar="RUN_DIR", help="with --write: take the default run's rows from this "
                    "finished cold run (e.g. the one benchmarks/pipeline.py just made) instead of running again")
    args = ap.parse_args()

    from atalaia.ioutil import atomic_write_json, import_tensorflow_quietly

    import_tensorflow_quietly()
    if args.check:
        golden = json.loads(GOLDEN.read_text())
        bad = compare(golden, run_facts(json.loads((Path(args.check) / "report.json").read_text())))
        print("\n".join(bad) or "default run within the golden tolerances")
        return 1 if bad else 0
    import atalaia

    if args.from_run:
        report = json.loads((Path(args.from_run) / "report.json").read_text())
    else:
        if Path(args.out).exists():
            shutil.rmtree(args.out)
        report = atalaia.run(None, args.out).to_dict()
    atomic_write_json(GOLDEN, {
        "command": "python benchmarks/golden.py --write",
        "tolerance": {"accuracy": ACCURACY_TOLERANCE, "float_flash_bytes": FLOAT_FLASH_TOLERANCE,
                      "architecture": "exact", "default_run": "exact except accuracy"},
        "architecture": architecture_facts(),
        "default_run": run_facts(report),
    })
    print(f"wrote {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
