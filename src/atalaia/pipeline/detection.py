"""The face-detection plan (`task: detection`): a tiny detector with 5 landmarks, for a door camera.

    detector        `face_det` (models/detector.py) trained on the face_frames train split
    pruned_channel  structured channel pruning + fine-tune                                   [optional]
    int8            full-integer PTQ of the last float stage, checked in TFLM (ops, arena, parity in int8 steps)

Every row's `accuracy` is AP@0.5 on the test split against dlib **pseudo-labels** (which miss small and profile
faces); `macro_f1` is NaN (no classes). The `detection` section holds AP@0.5:0.95, recall by face size, landmark
NME, false positives per empty frame, the PR curves (`plots/detection_pr.png`) and example frames with boxes and
landmarks (`plots/detection_examples.png`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from atalaia import __version__
from atalaia.data.frames import FrameAugment, load_frames
from atalaia.errors import RecipeError
from atalaia.evaluate import profile
from atalaia.evaluate.detection import (
    LABEL_NOTE,
    Detections,
    dequantize,
    detection_metrics,
    draw_examples,
    plot_pr,
    pr_curve,
)
from atalaia.evaluate.result import StageResult
from atalaia.face.detect import detect_frames, letterboxed, train_detector
from atalaia.ioutil import atomic_write_bytes
from atalaia.models.detector import build_detector
from atalaia.pipeline.plan import Plan, Stage
from atalaia.pipeline.runfolder import StageOutcome, now_utc
from atalaia.pipeline.stages import profiled_row, quantize_and_check, save_float, save_npz, save_self_test
from atalaia.report.schema import Report

STAGES = ("detector", "pruned_channel", "int8")
BUDGETS = {"flash_bytes": 150 * 1024, "arena_bytes": 100 * 1024, "macs": 15_000_000}
NOTES = (
    "accuracy = AP@0.5 on the test split against dlib pseudo-labels; macro_f1 is NaN (detection has no classes).",
    LABEL_NOTE,
    "Flash = bytes of the .tflite as flashed; arena measured in the real TFLM runtime; MCU latencies are "
    "estimates (MACs-based, calibrated on published TFLM timings), labelled 'est.'; host latency is LiteRT, "
    "1 thread, median. Post-processing (decode + NMS) is not in the MACs.",
    "Test frames: CelebA and CMU+MIT frames with at least one pseudo-labelled face, and the `nonface` scenes "
    "(clean negatives; dlib's one road-sign false alarm there is dropped). Frames where dlib found no face are "
    "misses, not negatives, and are left out.",
)
CURVE_POINTS = 200


def _curve(prec: np.ndarray, rec: np.ndarray) -> dict:
    idx = np.unique(np.linspace(0, max(len(rec) - 1, 0), min(CURVE_POINTS, len(rec))).astype(int))
    return {"precision": [round(float(v), 4) for v in prec[idx]], "recall": [round(float(v), 4) for v in rec[idx]]}


class DetectionPlan(Plan):
    task = "detection"

    def _path(self, p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else (Path(self.recipe.base_dir) / q).resolve()

    def prepare(self) -> None:
        r, dc = self.recipe, self.recipe.detection
        t0 = time.perf_counter()
        root = self._path(dc.frames_root)
        self.train = load_frames(root, landmarks=dc.landmarks, splits=("train",), max_frames=dc.max_frames)
        self.test = load_frames(root, landmarks=dc.landmarks, splits=("test",), max_frames=dc.max_frames)
        if self.test.n_faces() == 0:
            raise RecipeError(f"detection.frames_root {root}: the test split has no labelled face")
        self.input_hw = (int(r.data.image_size[0]), int(r.data.image_size[1]))
        self.empty = [s == "nonface" for s in self.test.sources]
        self.data_key = f"{self.train.fingerprint()}-{self.test.fingerprint()}"
        self.info = {"root": str(root), "train": self.train.info(), "test": self.test.info(),
                     "input_hw": list(self.input_hw), "landmarks": dc.landmarks, "label_note": LABEL_NOTE}
        self.log(f"[data] frames: train {len(self.train)} ({self.train.n_faces()} faces), test {len(self.test)} "
                 f"({self.test.n_faces()} faces, {sum(self.empty)} empty) ({time.perf_counter() - t0:.1f} s)")
        self._models: dict = {}

    def stages(self) -> list[Stage]:
        r, dc = self.recipe, self.recipe.detection
        aug = (dc.aug_scale, dc.aug_shift, dc.aug_flip)
        out = [Stage("detector", self.detector, (self.data_key, r.data.image_size, r.train, r.student, r.seed, aug))]
        self.final_float = "detector"
        cp = r.prune.channel
        if cp.enabled and cp.ratio > 0:
            out.append(Stage("pruned_channel", self.pruned_channel, (cp, aug), needs=("detector",)))
            self.final_float = "pruned_channel"
        post = (dc.score_threshold, dc.eval_threshold, dc.nms_iou, dc.max_detections)
        out.append(Stage("int8", self.int8, (r.quantize, r.evaluate, post), needs=(self.final_float,)))
        return out

    def done_message(self, stage: str, outcome: StageOutcome) -> str:
        m = outcome.extra["metrics"]
        return (f"[{stage}] done in {outcome.seconds:.1f} s: AP50 {100 * m['ap50']:.1f}%, AP50:95 "
                f"{100 * m['ap50_95']:.1f}%, recall {100 * m['recall']:.1f}% (vs dlib pseudo-labels), "
                f"flash {outcome.result.flash_bytes / 1024:.1f} KB")

    # ------------------------------------------------------------------------------------------ helpers
    def model(self, stage: str):
        if stage not in self._models:
            self._models[stage] = self.run.folder.model(stage)
        return self._models[stage]

    def _aug(self) -> FrameAugment:
        dc = self.recipe.detection
        return FrameAugment(scale=dc.aug_scale, shift=dc.aug_shift, flip=dc.aug_flip)

    def _train(self, model, stage: str, epochs: int, lr_scale: float = 1.0, seed_offset: int = 0) -> dict:
        t = self.recipe.train
        h = train_detector(model, self.train, self.input_hw, epochs=epochs, batch_size=t.batch_size,
                           learning_rate=t.learning_rate * lr_scale, weight_decay=t.weight_decay,
                           aug=self._aug(), seed=self.recipe.seed + seed_offset,
                           progress=self.progress(f"{stage}: epochs", epochs), log=self.log)
        return h.to_dict()

    def _evaluate(self, predict, d: Path) -> tuple[dict, dict]:
        """(metrics, extra facts) of a predictor on the test frames; detections stored in `d/detections.npz`."""
        dc = self.recipe.detection
        dets, raw = detect_frames(predict, self.test, self.input_hw, score_threshold=dc.eval_threshold,
                                  nms_iou=dc.nms_iou, max_detections=max(dc.max_detections, 50))
        m = detection_metrics(dets, list(self.test.boxes), list(self.test.landmarks), self.empty,
                              score_threshold=dc.score_threshold)
        prec, rec, _ = pr_curve(dets, list(self.test.boxes), 0.5)
        counts = np.array([len(x) for x in dets])
        save_npz(d / "detections.npz", counts=counts,
                 boxes=np.concatenate([x.boxes for x in dets]) if counts.sum() else np.zeros((0, 4)),
                 scores=np.concatenate([x.scores for x in dets]) if counts.sum() else np.zeros(0),
                 landmarks=np.concatenate([x.landmarks for x in dets]) if counts.sum() else np.zeros((0, 5, 2)))
        return m, {"pr_curve": _curve(prec, rec)}

    def _row(self, stage: str, model, blob: bytes, dtype: str, metrics: dict, **fields) -> StageResult:
        keep = ("ap50_95", "recall", "precision", "nme", "fp_per_empty_frame", "score_threshold")
        return profiled_row(self.recipe, blob, stage=stage, model=model.name, dtype=dtype,
                            params=profile.count_params(model), accuracy=float(metrics["ap50"]),
                            macro_f1=float("nan"), extra={k: metrics[k] for k in keep}, **fields)

    def _float_stage(self, stage: str, model, d: Path, history: dict, **extra) -> tuple[StageResult, dict]:
        blob = save_float(model, d)
        self._models[stage] = model
        m, facts = self._evaluate(lambda x: model.predict(x, batch_size=64, verbose=0), d)
        return self._row(stage, model, blob, "float32", m), {"history": history, "metrics": m, **facts, **extra}

    # ------------------------------------------------------------------------------------------ stages
    def detector(self, d: Path):
        r = self.recipe
        model = build_detector((*self.input_hw, 1), width=r.student.width)
        h = self._train(model, "detector", r.train.epochs)
        return self._float_stage("detector", model, d, h)

    def pruned_channel(self, d: Path):
        from atalaia.compress.prune import channel_prune

        cp = self.recipe.prune.channel
        model, summary = channel_prune(self.model("detector"), cp.ratio, cp.criterion)
        h = self._train(model, "pruned_channel", cp.epochs, lr_scale=0.3, seed_offset=4)
        return self._float_stage("pruned_channel", model, d, h, summary=summary)

    def int8(self, d: Path):
        r, src = self.recipe, self.final_float
        model = self.model(src)
        x_train = letterboxed(self.train, self.input_hw)[0].astype(np.float32) / 255.0
        rep = x_train[np.random.default_rng(r.seed).permutation(len(x_train))[: r.quantize.representative_samples]]
        x_test = letterboxed(self.test, self.input_hw)[0].astype(np.float32) / 255.0
        q = quantize_and_check(model, rep, r.quantize, d, x_test)
        scale, zp = q.runner.output_scale, q.runner.output_zero_point

        def predict(x):
            return dequantize(q.runner.predict_raw(q.runner.quantize_input(x)), scale, zp)

        m, facts = self._evaluate(predict, d)
        sample_q = q.runner.quantize_input(x_test[:1])
        save_self_test(d, sample_q, q.runner.predict_raw(sample_q))
        row = self._row("int8", model, q.blob, "int8", m, arena_bytes=int(q.tflm.arena_bytes))
        budgets = {"flash_bytes": [row.flash_bytes, BUDGETS["flash_bytes"]],
                   "arena_bytes": [row.arena_bytes, BUDGETS["arena_bytes"]], "macs": [row.macs, BUDGETS["macs"]]}
        extra = {"source_stage": src, "metrics": m, **facts, "tflm": q.tflm_facts(), "fits": q.fits(r.evaluate.targets),
                 "budgets": {k: {"value": v, "limit": lim, "ok": bool(v <= lim)} for k, (v, lim) in budgets.items()},
                 "output_quantization": {"scale": float(scale), "zero_point": int(zp)},
                 "float_ap50": self.row(src).accuracy}
        return row, extra

    # ------------------------------------------------------------------------------------------ report
    def _plots(self) -> list[str]:
        out, dc = self.run.outcomes, self.recipe.detection
        plots = self.out / "plots"
        plots.mkdir(parents=True, exist_ok=True)
        curves = {s: (np.array(out[s].extra["pr_curve"]["precision"]), np.array(out[s].extra["pr_curve"]["recall"]))
                  for s in STAGES if s in out}
        atomic_write_bytes(plots / "detection_pr.png", plot_pr(curves))
        written = ["plots/detection_pr.png"]
        with np.load(self.run.folder.path("int8", "detections.npz")) as z:
            counts, boxes, scores, lms = z["counts"], z["boxes"], z["scores"], z["landmarks"]
        starts = np.concatenate([[0], np.cumsum(counts)])
        # examples: faces of every source and some empty frames, in a fixed order
        order = sorted(range(len(self.test)), key=lambda i: (self.test.sources[i], self.test.names[i]))
        pick = [i for k, i in enumerate(order) if k % max(1, len(order) // dc.example_frames) == 0]
        pick = pick[: dc.example_frames]
        dets = []
        for i in pick:
            a, b = starts[i], starts[i + 1]
            keep = scores[a:b] >= dc.score_threshold
            dets.append(Detections(boxes[a:b][keep], scores[a:b][keep], lms[a:b][keep]))
        png = draw_examples([self.test.images[i] for i in pick], dets, [self.test.boxes[i] for i in pick])
        atomic_write_bytes(plots / "detection_examples.png", png)
        return [*written, "plots/detection_examples.png"]

    def report(self, seconds: float) -> Report:
        r, out = self.recipe, self.run.outcomes
        sec = {"label_note": LABEL_NOTE, "input_hw": list(self.input_hw),
               "per_stage": {s: out[s].extra["metrics"] for s in STAGES if s in out},
               "int8": {k: out["int8"].extra[k] for k in ("source_stage", "tflm", "fits", "budgets",
                                                          "output_quantization", "float_ap50")},
               "plots": self._plots()}
        if "pruned_channel" in out:
            a, b = self.row("detector"), self.row("pruned_channel")
            sec["channel_pruning"] = {"ratio": r.prune.channel.ratio, "params_before": a.params,
                                      "params_after": b.params, "macs_before": a.macs, "macs_after": b.macs,
                                      "ap50_before": a.accuracy, "ap50_after": b.accuracy}
        return Report(
            task=self.task, recipe_name=r.name, stages=tuple(out[s].result for s in STAGES if s in out),
            recipe=r.to_dict(), dataset=self.info, targets=tuple(r.evaluate.targets), notes=NOTES,
            timings_s={k: round(v.seconds, 2) for k, v in out.items()},
            history={s: out[s].extra["history"] for s in STAGES if s in out and "history" in out[s].extra},
            sections={"detection": sec}, atalaia_version=__version__, created=now_utc())


__all__ = ["BUDGETS", "DetectionPlan", "NOTES", "STAGES"]
