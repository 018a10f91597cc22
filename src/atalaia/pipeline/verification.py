"""The face-embedding plan (`task: verification`): a grey int8 student distilled from dlib's ResNet, on LFW.

    teacher         dlib ResNet 128-d on the LFW chips (stored embeddings, dlib for chips without one)
    student         ds_cnn embedding student: margin softmax + embedding/relational/anchor KD (`face.loss`;
                    with face.loss.consistent_views = K, on K cached augmented views with dlib targets each)
    pruned_channel  structured channel pruning + the same loss, fine-tuned                     [optional]
    int8_litert     full-integer PTQ, run with LiteRT reference kernels; face_model.json for the device
    int8_tflm       the same .tflite in the TFLM interpreter on the evaluation images (arena, parity)

Every row's `accuracy` is the LFW 10-fold mean accuracy (cosine score, threshold chosen on 9 folds); `macro_f1`
is NaN (no closed set). Float stages embed every chip and its mirror image and store both scorings, so
`face.mirror_tta` picks which one is reported without retraining (`Stage.present`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from atalaia import __version__
from atalaia.compress.prune import channel_prune
from atalaia.data.dataset import mirrored, to_float
from atalaia.deploy.tflite import TFLiteRunner
from atalaia.deploy.tflm import run_tflm
from atalaia.errors import RecipeError
from atalaia.evaluate import profile
from atalaia.evaluate.result import StageResult
from atalaia.evaluate.verification import (
    cosine_scores,
    euclidean_distances,
    impostor_tail,
    lfw_10fold,
    mirror_fuse,
    open_set_identification,
    open_set_threshold,
    plot_roc,
    roc,
)
from atalaia.face.data import representative_inputs
from atalaia.face.evalset import build_eval_set, verification_summary
from atalaia.face.teacher import dlib_costs, load_training_chips, teacher_eval_embeddings
from atalaia.face.train import TrainLog, build_student, embed, train_embedding
from atalaia.face.views import consistent_views
from atalaia.ioutil import atomic_write_text
from atalaia.pipeline.plan import Plan, Stage
from atalaia.pipeline.runfolder import StageOutcome, now_utc
from atalaia.pipeline.stages import profiled_row, quantize_and_check, save_float, save_npz, save_self_test
from atalaia.report.schema import Report

STAGES = ("teacher", "student", "pruned_channel", "int8_litert", "int8_tflm")
STAGE_LABELS = {
    "teacher": "teacher (dlib ResNet)", "student": "student float", "pruned_channel": "student channel-pruned",
    "int8_litert": "student int8 (LiteRT)", "int8_tflm": "student int8 (TFLM)",
}
VER_FIELDS = ("acc_std", "auc", "tar_at_far_0.01", "tar_at_far_0.001", "threshold")  # copied into StageResult.extra
F1_NOTE = "macro_f1 is NaN for verification rows: open-set face verification has no closed set of classes"
NOTES = (
    "accuracy = LFW 10-fold verification accuracy (pairs file, cosine similarity, threshold chosen on 9 folds, "
    "tested on the 10th); std over folds in extra.acc_std.",
    F1_NOTE,
    "Open-set identification (enrol 5 images per person, half of the LFW people with >= 10 images; the other half "
    "are strangers): rank-1 ignores the threshold; FAR = strangers accepted, DIR = enrolled probes accepted as "
    "the right person. Two thresholds, both chosen on the pairs: the LFW accuracy threshold (mean fold "
    "threshold) and the threshold at pair FAR 1e-3 (1:N matching needs the stricter one).",
    "Flash = bytes of the .tflite as flashed; arena measured in the real TFLM runtime; MCU latencies are "
    "estimates (MACs-based, calibrated on published TFLM timings); host latency is LiteRT reference kernels, "
    "1 thread, median.",
    "Teacher row: dlib's ResNet (not an MCU model): flash = its .dat weight file, params = file bytes / 4 "
    "(approximate), MACs not counted (0), host latency = dlib CPU time per 150x150 chip.",
)


def face_model_facts(recipe, runner: TFLiteRunner, ver: dict) -> dict[str, Any]:
    """What a device needs besides the .tflite to produce comparable embeddings and decide: the preprocessing
    (chip recipe, grey, centre crop, size, input quantization) and the match thresholds chosen on LFW."""
    f = recipe.face
    return {
        "chip": "dlib 5-point alignment, get_face_chip(size=150, padding=0.25), resized to 112x112 (atalaia align)",
        "grey": True, "crop": f.crop, "input_size": int(recipe.data.image_size[0]), "resize": "LANCZOS (Pillow)",
        "input_scale": float(runner.input_scale), "input_zero_point": int(runner.input_zero_point),
        "output_scale": float(runner.output_scale), "output_zero_point": int(runner.output_zero_point),
        "embedding_dim": int(f.embedding_dim), "score": "cosine similarity of the dequantized embeddings",
        # with mirror TTA a face's embedding is unit(unit(e(chip)) + unit(e(mirrored chip))): two inferences
        "mirror_tta": bool(f.mirror_tta), "inferences_per_face": 2 if f.mirror_tta else 1,
        "threshold_lfw_accuracy": float(ver["threshold"]),
        "threshold_far_1e-3": float(ver.get("threshold_at_far_0.001", float("nan"))),
        "threshold_far_1e-2": float(ver.get("threshold_at_far_0.01", float("nan"))),
    }


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _ver_fields(ver: dict) -> dict[str, Any]:
    return {**{k: ver[k] for k in VER_FIELDS}, "open_set": ver.get("open_set"), "macro_f1_note": F1_NOTE}


class VerificationPlan(Plan):
    task = "verification"

    # ------------------------------------------------------------------------------------------ data
    def _path(self, p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else (Path(self.recipe.base_dir) / q).resolve()

    def prepare(self) -> None:
        r, f = self.recipe, self.recipe.face
        self.size = int(r.data.image_size[0])
        self.cache_dir = self._path(f.cache_dir) if f.cache_dir else self.out / "cache"
        lfw_root = self._path(f.lfw_root)
        pairs = Path(f.pairs) if Path(f.pairs).is_absolute() else lfw_root / f.pairs
        t0 = time.perf_counter()
        self.ev = build_eval_set(lfw_root, pairs, self.size, enrol_per_identity=f.enrol_per_identity,
                                 open_set_min_images=f.open_set_min_images, seed=r.seed, crop=f.crop)
        if self.ev.missing_pairs:
            self.log(f"[data] {len(self.ev.missing_pairs)} of {self.ev.n_declared} LFW pairs left out "
                     f"(missing/unreadable image; listed in the report)")
        self.log(f"[data] LFW: {len(self.ev.rel_paths)} images, {len(self.ev.left)} pairs "
                 f"({time.perf_counter() - t0:.1f} s)")
        self.chips = load_training_chips([self._path(p) for p in f.train_sets], self.size, cache_dir=self.cache_dir,
                                         crop=f.crop, min_images_per_identity=f.min_images_per_identity,
                                         max_train_chips=f.max_train_chips, seed=r.seed, log=self.log,
                                         exclude_lfw_overlap=f.exclude_lfw_overlap)
        i = self.chips.info
        self.log(f"[data] training: {i['chips']} chips, {i['identities']} identities, {i['unlabelled']} unlabelled")
        self._models: dict[str, keras.Model] = {}

    def stages(self) -> list[Stage]:
        r, f, ev_key = self.recipe, self.recipe.face, self.ev.fingerprint()
        # the training data enter by content (chips, labels, teacher targets), not by how folders are spelled
        student = (self.chips.info["fingerprint"], ev_key, r.train, r.student, r.seed, self.size, f.loss,
                   f.embedding_dim, f.student_head)
        out = [Stage("teacher", self.teacher, (ev_key, f.teacher_embeddings), version="2"),
               Stage("student", self.student, student, version="2", present=self.present_mode)]
        self.final_float = "student"
        cp = r.prune.channel
        if cp.enabled and cp.ratio > 0:
            out.append(Stage("pruned_channel", self.pruned_channel, (cp, f.finetune_lr_scale), needs=("student",),
                             version="2", present=self.present_mode))
            self.final_float = "pruned_channel"
        out += [Stage("int8_litert", self.int8_litert, (r.quantize, r.evaluate, f.mirror_tta),
                      needs=(self.final_float,), version="3"),
                Stage("int8_tflm", self.int8_tflm, (f.tflm_max_images,), needs=("int8_litert",), version="2")]
        return out

    def done_message(self, stage: str, outcome: StageOutcome) -> str:
        v = outcome.extra["verification"]
        return (f"[{stage}] done in {outcome.seconds:.1f} s: LFW {100 * v['acc_mean']:.2f}% +- "
                f"{100 * v['acc_std']:.2f}, AUC {v['auc']:.4f}, flash {outcome.result.flash_bytes / 1024:.1f} KB")

    # ------------------------------------------------------------------------------------------ scoring
    def embeddings(self, stage: str) -> np.ndarray:
        """A stage's embeddings of the evaluation images as the recipe scores them (mirror-fused or plain)."""
        with np.load(self.run.folder.path(stage, "embeddings.npz")) as z:
            if self.recipe.face.mirror_tta and "mirror" in z.files:
                return mirror_fuse(z["plain"], z["mirror"])
            return z["plain"]

    def _score(self, plain: np.ndarray, mirror: np.ndarray | None) -> tuple[dict, dict]:
        """(verification as the recipe uses it, both modes' facts). Both modes are scored whenever the mirror
        embeddings exist, so every run shows what mirror TTA buys."""
        use = bool(self.recipe.face.mirror_tta)
        if mirror is None:
            if use:
                raise RecipeError("face.mirror_tta needs the mirror embeddings")
            return verification_summary(plain, self.ev)[0], {"used": False}
        modes = {"plain": verification_summary(plain, self.ev)[0],
                 "mirror": verification_summary(mirror_fuse(plain, mirror), self.ev)[0]}
        return modes["mirror" if use else "plain"], self._tta(modes, use)

    @staticmethod
    def _tta(modes: dict, use: bool) -> dict:
        return {"used": use, "acc_plain": modes["plain"]["acc_mean"], "acc_mirror": modes["mirror"]["acc_mean"],
                "auc_plain": modes["plain"]["auc"], "auc_mirror": modes["mirror"]["auc"], "modes": modes}

    def present_mode(self, o: StageOutcome) -> StageOutcome:
        """A float stage reported in the recipe's mirror mode (both are stored; no retraining, no rewrite)."""
        use = bool(self.recipe.face.mirror_tta)
        modes = o.extra["mirror_tta"]["modes"]
        ver = modes["mirror" if use else "plain"]
        if bool(o.extra["mirror_tta"]["used"]) != use:
            self.log(f"[{o.result.stage}] re-scored with face.mirror_tta={use} (not retrained): "
                     f"LFW {100 * ver['acc_mean']:.2f}%")
        row = dataclasses.replace(o.result, accuracy=ver["acc_mean"], extra={**o.result.extra, **_ver_fields(ver)})
        return StageOutcome(row, {**o.extra, "verification": ver, "mirror_tta": self._tta(modes, use)}, o.seconds)

    # ------------------------------------------------------------------------------------------ stages
    def teacher(self, d: Path):
        ev = self.ev
        emb, info = teacher_eval_embeddings(ev, source=self.recipe.face.teacher_embeddings,
                                            cache_dir=self.cache_dir, log=self.log)
        save_npz(d / "embeddings.npz", plain=emb)
        ver, _ = verification_summary(emb, ev)
        ten = lfw_10fold(-euclidean_distances(emb[ev.left], emb[ev.right]), ev.is_same, ev.fold)
        info["euclidean_acc_mean"], info["euclidean_acc_std"] = ten["mean"], ten["std"]
        dat, lat = dlib_costs(ev, self.log)
        row = StageResult(stage="teacher", model="dlib_resnet_v1", dtype="float32", params=dat // 4, macs=0,
                          flash_bytes=dat, accuracy=ver["acc_mean"], macro_f1=float("nan"), host_latency_ms=lat,
                          extra={**_ver_fields(ver), "teacher": info})
        return row, {"verification": ver, "teacher": info}

    def _views(self) -> dict:
        """Consistent teaching's views and their dlib targets (face.loss.consistent_views = K > 0), made once."""
        k, f = self.recipe.face.loss.consistent_views, self.recipe.face
        if k <= 0:
            return {}
        if not hasattr(self, "_cv"):
            n, t0 = len(self.chips.files), time.perf_counter()
            self._cv = consistent_views(self.chips.files, self.size, k=k, cache_dir=self.cache_dir, crop=f.crop,
                                        workers=min(4, os.cpu_count() or 1),  # same embeddings, in parallel
                                        progress=self.progress("views: dlib teacher", n), log=self.log)
            self.log(f"[views] {n} chips x {k} views ready ({self._cv.embedded} embedded now, "
                     f"{time.perf_counter() - t0:.1f} s)")
        return {"views": self._cv.views, "view_targets": self._cv.targets}

    def _train(self, m, stage: str, *, epochs: int, init: dict | None = None, **kw) -> TrainLog:
        c = self.chips
        kw |= self._views()
        return train_embedding(m, c.images, c.labels, c.teacher, c.num_classes, loss=self.recipe.face.loss,
                               train=self.recipe.train, epochs=epochs, progress=self.progress(f"{stage}: epochs", epochs),
                               log=lambda s: self.log(f"[{stage}] {s}"), init_head=(init or {}).get("head"),
                               init_proj=(init or {}).get("proj"), **kw)

    def _float_stage(self, stage: str, model, d: Path, tlog: TrainLog, extra: dict):
        blob = save_float(model, d)
        self._models[stage] = model
        if tlog.head is not None:
            save_npz(d / "heads.npz", head=tlog.head, proj=tlog.proj)
        plain, mirror = embed(model, self.ev.images), embed(model, mirrored(self.ev.images))
        save_npz(d / "embeddings.npz", plain=plain, mirror=mirror)
        ver, tta = self._score(plain, mirror)
        row = profiled_row(self.recipe, blob, stage=stage, model=model.name, dtype="float32",
                           params=profile.count_params(model), accuracy=ver["acc_mean"], macro_f1=float("nan"),
                           extra=_ver_fields(ver))
        return row, {"verification": ver, "mirror_tta": tta, "history": tlog.to_dict(), **extra}

    def student(self, d: Path):
        r, f = self.recipe, self.recipe.face
        m = build_student(self.size, width=r.student.width, embedding_dim=f.embedding_dim, name=r.student.name,
                          head=f.student_head)
        tlog = self._train(m, "student", epochs=r.train.epochs, seed=r.seed)
        return self._float_stage("student", m, d, tlog, {"train_data": self.chips.info})

    def model(self, stage: str) -> keras.Model:
        if stage not in self._models:
            self._models[stage] = self.run.folder.model(stage)
        return self._models[stage]

    def pruned_channel(self, d: Path):
        r, cp = self.recipe, self.recipe.prune.channel
        m, summary = channel_prune(self.model("student"), cp.ratio, cp.criterion)
        init = dict(np.load(self.run.folder.path("student", "heads.npz"))) if self.run.folder.has("student", "heads.npz") else {}
        tlog = self._train(m, "pruned_channel", epochs=cp.epochs, init=init, seed=r.seed + 4,
                           learning_rate=r.train.learning_rate * r.face.finetune_lr_scale, warmup_epochs=0.0)
        return self._float_stage("pruned_channel", m, d, tlog, {"summary": summary})

    def int8_litert(self, d: Path):
        r, src, ev = self.recipe, self.final_float, self.ev
        model, parent = self.model(src), self.row(src)
        rep = representative_inputs(self.chips.images, r.quantize.representative_samples, r.seed)
        q = quantize_and_check(model, rep, r.quantize, d, to_float(ev.images))
        xq = q.runner.quantize_input(to_float(ev.images))
        raw, raw_m = q.runner.predict_raw(xq), q.runner.predict_raw(mirrored(xq))
        plain, mirror = q.runner.dequantize_output(raw), q.runner.dequantize_output(raw_m)
        ver, tta = self._score(plain, mirror)
        emb = mirror_fuse(plain, mirror) if tta["used"] else plain
        save_npz(d / "embeddings.npz", plain=plain, mirror=mirror, raw=raw, raw_mirror=raw_m)
        save_self_test(d, xq[:1], raw[:1])  # one LFW chip + its host int8 embedding
        facts = face_model_facts(r, q.runner, ver)
        facts["impostor_tail"] = impostor_tail(emb, [Path(p).parent.name for p in ev.rel_paths], seed=r.seed)
        atomic_write_text(d / "face_model.json", json.dumps(facts, indent=2))
        row = profiled_row(r, q.blob, stage="int8_litert", model=model.name, dtype="int8", params=parent.params,
                           accuracy=ver["acc_mean"], macro_f1=float("nan"), arena_bytes=int(q.tflm.arena_bytes),
                           extra=_ver_fields(ver))
        extra = {"verification": ver, "mirror_tta": tta, "source_stage": src, "float_acc_mean": parent.accuracy,
                 "accuracy_drop_pp": round(100 * (parent.accuracy - ver["acc_mean"]), 3),
                 "mean_cosine_to_float_embedding": float(np.mean(np.sum(_unit(self.embeddings(src)) * _unit(emb), 1))),
                 "input_quantization": {"scale": q.runner.input_scale, "zero_point": q.runner.input_zero_point},
                 "output_quantization": {"scale": q.runner.output_scale, "zero_point": q.runner.output_zero_point},
                 "tflm": q.tflm_facts(), "fits": q.fits(r.evaluate.targets)}
        return row, extra

    def int8_tflm(self, d: Path):
        """The first `face.tflm_max_images` images (and their mirrors) through TFLM; LiteRT's outputs for the rest."""
        f, src = self.recipe.face, self.row("int8_litert")
        blob = self.run.folder.path("int8_litert", "model.tflite").read_bytes()
        runner = TFLiteRunner(blob)
        with np.load(self.run.folder.path("int8_litert", "embeddings.npz")) as z:
            lite = {"raw": z["raw"], "raw_mirror": z["raw_mirror"]}
        xq = runner.quantize_input(to_float(self.ev.images))
        inputs = {"raw": xq} | ({"raw_mirror": mirrored(xq)} if f.mirror_tta else {})
        n = len(xq) if f.tflm_max_images is None else min(len(xq), f.tflm_max_images)
        out, diffs, t0 = dict(lite), [], time.perf_counter()
        for name, x in inputs.items():
            out[name] = lite[name].copy()
            out[name][:n] = run_tflm(blob, x[:n], int(src.arena_bytes or 0)).reshape(out[name][:n].shape)
            diffs.append(np.abs(out[name][:n].astype(np.int32) - lite[name][:n].astype(np.int32)))
        tflm_s, diff, runs = time.perf_counter() - t0, np.concatenate(diffs), n * len(inputs)
        plain, mirror = runner.dequantize_output(out["raw"]), runner.dequantize_output(out["raw_mirror"])
        ver, tta = self._score(plain, mirror)
        save_npz(d / "embeddings.npz", plain=plain, mirror=mirror, **out)
        parity = {"images": int(n), "of": int(len(xq)), "mirrored_too": bool(f.mirror_tta),
                  "max_abs_diff_steps": int(diff.max()) if diff.size else 0,
                  "exact_fraction": float(np.mean(diff == 0)) if diff.size else 1.0,
                  "litert_used_for_rest": int(len(xq) - n), "tflm_seconds": round(tflm_s, 2),
                  "tflm_ms_per_image_host": round(1e3 * tflm_s / max(runs, 1), 3)}
        self.log(f"[int8_tflm] {runs} inferences through TFLM: parity max diff {parity['max_abs_diff_steps']} "
                 f"steps, {100 * parity['exact_fraction']:.2f}% bit-exact")
        row = dataclasses.replace(src, stage="int8_tflm", accuracy=ver["acc_mean"],
                                  extra={**_ver_fields(ver), "parity": parity})
        return row, {"verification": ver, "mirror_tta": tta, "parity": parity}

    # ------------------------------------------------------------------------------------------ report
    def report(self, seconds: float) -> Report:
        r, out = self.recipe, self.run.outcomes
        stages = [s for s in STAGES if s in out]
        return Report(
            task=self.task, recipe_name=r.name, stages=tuple(out[s].result for s in stages), recipe=r.to_dict(),
            dataset={"train": self.chips.info, "eval": self.ev.summary()}, targets=tuple(r.evaluate.targets),
            notes=NOTES, timings_s={k: round(v.seconds, 2) for k, v in out.items()}
            | {"total_this_invocation": round(seconds, 1)},
            history={s: out[s].extra["history"] for s in stages if "history" in out[s].extra},
            sections=self._sections(stages), atalaia_version=__version__, created=now_utc())

    def _sections(self, stages: list[str]) -> dict[str, Any]:
        r, out, ev = self.recipe, self.run.outcomes, self.ev
        embs = {s: self.embeddings(s) for s in stages}
        curves = {STAGE_LABELS[s]: roc(cosine_scores(embs[s][ev.left], embs[s][ev.right]), ev.is_same)[:2]
                  for s in stages}
        plot = plot_roc(curves, self.out / "plots" / "roc_lfw.png", title=f"LFW {ev.pairs_file.name}, cosine")
        models = {s: {**out[s].extra["verification"], "label": STAGE_LABELS[s],
                      "mirror_tta": _without_modes(out[s].extra.get("mirror_tta"))} for s in stages}
        if len(ev.gallery):
            for s in stages:
                models[s] |= self._open_set(embs[s], models[s])
        sec: dict[str, Any] = {"verification": {
            "protocol": "LFW View 2 pairs file, 10 folds; cosine similarity; threshold maximising accuracy on "
                        "9 folds, accuracy on the 10th; std over folds (ddof=0); TAR at FAR from the pooled ROC",
            "pairs_file": str(ev.pairs_file), "pairs_used": int(len(ev.left)),
            "pairs_missing": len(ev.missing_pairs), "models": models,
            "roc_plot": str(Path(plot).relative_to(self.out)), "teacher": out["teacher"].extra.get("teacher")}}
        if "pruned_channel" in out:
            s, p = self.row("student"), self.row("pruned_channel")
            sec["channel_pruning"] = {
                "ratio": r.prune.channel.ratio, "criterion": r.prune.channel.criterion, "params_before": s.params,
                "params_after": p.params, "macs_before": s.macs, "macs_after": p.macs, "flash_before": s.flash_bytes,
                "flash_after": p.flash_bytes, "layers": out["pruned_channel"].extra.get("summary", {}).get("layers", {})}
        ex = out["int8_litert"].extra
        sec["int8"] = {k: ex[k] for k in ("source_stage", "float_acc_mean", "accuracy_drop_pp",
                                          "mean_cosine_to_float_embedding", "tflm", "fits", "input_quantization",
                                          "output_quantization")}
        sec["int8"]["tflm_lfw_parity"] = out["int8_tflm"].extra["parity"]
        return sec

    def _open_set(self, emb: np.ndarray, ver: dict) -> dict[str, Any]:
        """Open set at stricter operating points: 1:N matching against many templates accepts a stranger far
        more often than one 1:1 pair does. At pair FAR 1e-3 (chosen on pairs), and at the threshold `atalaia
        access` uses: ~1 % of strangers' attempts accepted against this gallery size (verification.open_set_threshold)."""
        ev, out = self.ev, {}
        th = ver.get("threshold_at_far_0.001")
        if th is not None and np.isfinite(th):
            out["open_set_at_far_1e-3"] = open_set_identification(emb[ev.gallery], ev.gallery_ids, emb[ev.probes],
                                                                  ev.probe_ids, float(th))
        tail = impostor_tail(emb, [Path(p).parent.name for p in ev.rel_paths], seed=self.recipe.seed)
        if tail["thresholds"]:
            th2, pfar = open_set_threshold(tail, len(ev.gallery), 1e-2)
            out["open_set_at_open_far_1e-2"] = open_set_identification(
                emb[ev.gallery], ev.gallery_ids, emb[ev.probes], ev.probe_ids, th2) | {"pairwise_far": pfar}
        return out


def _without_modes(tta: dict | None) -> dict | None:
    return None if tta is None else {k: v for k, v in tta.items() if k != "modes"}


__all__ = ["NOTES", "STAGES", "STAGE_LABELS", "VerificationPlan", "face_model_facts"]
