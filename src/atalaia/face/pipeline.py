"""`FacePipeline(recipe, out_dir).run()`: the face-embedding recipe (`task: verification`) end to end.

Stages (same run-folder conventions as `atalaia.pipeline.Pipeline`: one folder per stage with `metrics.json`
and a `DONE.json` marker written last by atomic rename, holding the stage key; a finished stage with the same
key is skipped, so a killed run resumes):

    teacher         dlib ResNet 128-d on the LFW chips (stored embeddings, dlib for chips without one)
    student         grey ds_cnn embedding student: margin softmax (CosFace/ArcFace) + cosine KD through a
                    learned projection + relational KD, on every training chip (unlabelled ones feed KD only)
    pruned_channel  structured channel pruning (`compress.prune.channel_prune`) + the same loss, fine-tuned
    int8_litert     full-integer PTQ (`deploy.tflite.convert_int8`), run with LiteRT reference kernels
    int8_tflm       the same .tflite run in the TFLM interpreter on every evaluation image (arena, parity)

Every row is a `StageResult` whose `accuracy` is the LFW 10-fold mean accuracy (cosine score, threshold chosen
on 9 folds); `macro_f1` is NaN (no closed-set classes); the verification metrics are in `extra` and in the
report's `verification` section. Run folder: `recipe.yaml`, `<stage>/...`, `plots/roc_lfw.png`, `report.json`,
`report.md`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from atalaia import __version__
from atalaia.config import Recipe, dump_recipe
from atalaia.errors import DataError, RecipeError
from atalaia.evaluate.result import StageResult
from atalaia.face.evalset import EvalSet, build_eval_set, verification_summary
from atalaia.ioutil import atomic_write_bytes, atomic_write_json, atomic_write_text
from atalaia.runfolder import StagedRun, now_utc, save_keras, stage_key

STAGES = ("teacher", "student", "pruned_channel", "int8_litert", "int8_tflm")
STAGE_LABELS = {
    "teacher": "teacher (dlib ResNet)", "student": "student float", "pruned_channel": "student channel-pruned",
    "int8_litert": "student int8 (LiteRT)", "int8_tflm": "student int8 (TFLM)",
}
VER_FIELDS = ("acc_std", "auc", "tar_at_far_0.01", "tar_at_far_0.001", "threshold")  # copied into StageResult.extra
F1_NOTE = "macro_f1 is NaN for verification rows: open-set face verification has no closed set of classes"
NOTES = [
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
]


def face_model_facts(r: Recipe, runner, ver: dict) -> dict[str, Any]:
    """What a device needs besides the .tflite to produce comparable embeddings and decide: the preprocessing
    (chip recipe, grey, centre crop, size, input quantization) and the match thresholds chosen on LFW."""
    f = r.face
    return {
        "chip": "dlib 5-point alignment, get_face_chip(size=150, padding=0.25), resized to 112x112 (atalaia align)",
        "grey": True, "crop": f.crop, "input_size": int(r.data.image_size[0]),
        "resize": "LANCZOS (Pillow)",
        "input_scale": float(runner.input_scale), "input_zero_point": int(runner.input_zero_point),
        "output_scale": float(runner.output_scale), "output_zero_point": int(runner.output_zero_point),
        "embedding_dim": int(f.embedding_dim), "score": "cosine similarity of the dequantized embeddings",
        # with mirror TTA a face's embedding is unit(unit(e(chip)) + unit(e(mirrored chip))): two inferences
        "mirror_tta": bool(f.mirror_tta), "inferences_per_face": 2 if f.mirror_tta else 1,
        "threshold_lfw_accuracy": float(ver["threshold"]),
        "threshold_far_1e-3": float(ver.get("threshold_at_far_0.001", float("nan"))),
        "threshold_far_1e-2": float(ver.get("threshold_at_far_0.01", float("nan"))),
    }


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


class FacePipeline(StagedRun):
    """Runs a `task: verification` recipe. `log` gets one-line messages; `make_progress(desc, total)` returns
    a per-epoch tick callable (or None), as for the closed-set Pipeline."""

    def __init__(self, recipe: Recipe, out_dir: str | Path, *, force: bool = False,
                 log: Callable[[str], None] = print,
                 make_progress: Callable[[str, int], Callable[[int], None] | None] | None = None) -> None:
        if recipe.task != "verification":
            raise RecipeError(f"FacePipeline runs 'task: verification' recipes; this one has task '{recipe.task}'")
        super().__init__(out_dir, force=force, log=log, make_progress=make_progress)
        self.recipe = recipe
        self._emb: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------------------------- paths
    def _path(self, p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else (Path(self.recipe.base_dir) / q).resolve()

    @property
    def cache_dir(self) -> Path:
        f = self.recipe.face
        return self._path(f.cache_dir) if f.cache_dir else self.out / "cache"

    # ------------------------------------------------------------------------------------- stage machinery
    def _done_message(self, stage: str, result: StageResult, extra: dict, seconds: float) -> str:
        v = extra["verification"]
        return (f"[{stage}] done in {seconds:.1f} s: LFW {100 * v['acc_mean']:.2f}% +- {100 * v['acc_std']:.2f}, "
                f"AUC {v['auc']:.4f}, flash {result.flash_bytes / 1024:.1f} KB")

    def _embeddings(self, stage: str) -> np.ndarray:
        if stage not in self._emb:
            with np.load(self._stage_dir(stage) / "embeddings.npz") as z:
                self._emb[stage] = z["emb"]
        return self._emb[stage]

    # ------------------------------------------------------------------------------------- data
    def _load_train(self):
        from atalaia.face.data import load_chip_sets

        r, f = self.recipe, self.recipe.face
        size = int(r.data.image_size[0])
        cs = load_chip_sets([self._path(p) for p in f.train_sets], size, cache_dir=self.cache_dir,
                            min_images_per_identity=f.min_images_per_identity, crop=f.crop)
        if cs.skipped:
            self.log(f"[data] {len(cs.skipped)} training chip(s) unreadable, left out (listed in report)")
        idx = np.arange(len(cs))
        if f.max_train_chips is not None and f.max_train_chips < len(cs):
            idx = np.sort(np.random.default_rng(r.seed).choice(len(cs), f.max_train_chips, replace=False))
        images, labels, teacher = cs.images[idx], cs.labels[idx], cs.teacher[idx]
        # re-densify labels after subsampling; identities left with one chip become unlabelled
        lab = labels >= 0
        uniq, inv, cnt = np.unique(labels[lab], return_inverse=True, return_counts=True)
        dense = np.full(len(labels), -1, np.int64)
        keep_id = cnt >= max(2, min(f.min_images_per_identity, 2))
        remap = -np.ones(len(uniq), np.int64)
        remap[keep_id] = np.arange(int(keep_id.sum()))
        dense[lab] = remap[inv.reshape(-1)]
        num_classes = int(dense.max() + 1) if (dense >= 0).any() else 0
        no_teacher = int((~np.isfinite(teacher).all(axis=1)).sum())
        if no_teacher:
            self.log(f"[data] {no_teacher} training chip(s) have no stored teacher embedding: KD is masked for them")
        info = {"train_sets": [str(self._path(p)) for p in f.train_sets], "sources": cs.sources,
                "chips": int(len(images)), "labelled": int((dense >= 0).sum()), "unlabelled": int((dense < 0).sum()),
                "identities": num_classes, "chips_without_teacher": no_teacher,
                "skipped": [{"path": p, "reason": why} for p, why in cs.skipped],
                "fingerprint": cs.fingerprint(), "subsampled_to": f.max_train_chips,
                "image_size": [size, size], "channels": 1, "crop": f.crop}
        return images, dense, teacher, num_classes, info

    def _teacher_lfw(self, ev: EvalSet) -> tuple[np.ndarray, dict]:
        """dlib embeddings of the evaluation chips: stored ones (dlib_resnet128.npz beside the chips),
        computed with dlib (cached) for the rest, or all recomputed when face.teacher_embeddings=recompute."""
        from atalaia.face.data import TEACHER_NPZ, read_grey

        f = self.recipe.face
        emb = np.full((len(ev.rel_paths), 128), np.nan, np.float32)
        stored = 0
        if f.teacher_embeddings == "stored":
            for cand in (ev.image_root / TEACHER_NPZ, ev.image_root.parent / TEACHER_NPZ):
                if cand.is_file():
                    with np.load(cand, allow_pickle=False) as z:
                        chips, e = [str(c) for c in z["chip"]], z["emb"]
                    prefix = ev.image_root.name + "/"
                    idx = {c[len(prefix):] if c.startswith(prefix) else c: i for i, c in enumerate(chips)}
                    for i, rel in enumerate(ev.rel_paths):
                        j = idx.get(rel)
                        if j is not None:
                            emb[i] = e[j]
                            stored += 1
                    break
        todo = np.flatnonzero(~np.isfinite(emb).all(axis=1))
        computed = 0
        if len(todo):
            from atalaia.models.dlib_teacher import DlibEmbedder

            self.log(f"[teacher] computing dlib embeddings for {len(todo)} chip(s) (~0.1 s each, cached)")
            emb_d = DlibEmbedder(cache=self.cache_dir / "dlib_teacher_cache.npz")
            chips = np.stack([read_grey(ev.image_root / ev.rel_paths[i], 112) for i in todo])
            emb[todo] = emb_d.embed_chips(chips)
            computed = len(todo)
        return emb, {"stored_embeddings": stored, "computed_with_dlib": computed,
                     "source": f.teacher_embeddings}

    # ------------------------------------------------------------------------------------- rows
    def _row(self, stage: str, model_name: str, dtype: str, blob: bytes | None, params: int, ver: dict,
             **fields) -> StageResult:
        from atalaia.deploy.targets import estimate_latency_ms
        from atalaia.evaluate import profile

        extra = {k: ver[k] for k in VER_FIELDS}
        extra["open_set"] = ver.get("open_set")
        extra["macro_f1_note"] = F1_NOTE
        if blob is None:
            return StageResult(stage=stage, model=model_name, dtype=dtype, params=int(params), macs=0,
                               flash_bytes=int(fields.pop("flash_bytes", 0)), accuracy=ver["acc_mean"],
                               macro_f1=float("nan"), extra={**extra, **fields.pop("extra", {})}, **fields)
        macs = profile.count_macs(blob)
        est = {t: round(float(estimate_latency_ms(macs["by_op"], macs["n_ops"], t)), 3)
               for t in self.recipe.evaluate.targets}
        return StageResult(
            stage=stage, model=model_name, dtype=dtype, params=int(params), macs=int(macs["total"]),
            flash_bytes=len(blob), accuracy=ver["acc_mean"], macro_f1=float("nan"),
            host_latency_ms=round(float(profile.host_latency_ms(blob, runs=self.recipe.evaluate.latency_runs)), 4),
            est_latency_ms=est, gzip_bytes=int(profile.gzip_size(blob)),
            extra={**extra, **fields.pop("extra", {})}, **fields)

    def _float_stage(self, stage: str, model, d: Path, ev: EvalSet, tlog, extra: dict) -> tuple[StageResult, dict]:
        from atalaia.deploy.tflite import convert_float
        from atalaia.evaluate import profile
        from atalaia.face.train import embed

        blob = convert_float(model)
        atomic_write_bytes(d / "model.tflite", blob)
        save_keras(model, d / "model.keras")
        self._models[stage] = model
        if tlog.head is not None:
            _save_npz(d / "heads.npz", head=tlog.head, proj=tlog.proj)
        plain, mirror = embed(model, ev.images), embed(model, _mirrored(ev.images))
        emb, ver, tta = self._verify(plain, mirror, ev)
        _save_npz(d / "embeddings.npz", emb=emb, plain=plain, mirror=mirror)
        self._emb[stage] = emb
        res = self._row(stage, model.name, "float32", blob, profile.count_params(model), ver)
        return res, {"verification": ver, "mirror_tta": tta,
                     "history": tlog.to_dict() | {"head": None, "proj": None}, **extra}

    def _verify(self, plain: np.ndarray, mirror: np.ndarray | None, ev: EvalSet) -> tuple[np.ndarray, dict, dict]:
        """(embeddings as the recipe uses them, their verification, mirror-TTA facts). With `mirror` given, both
        modes are scored, so every run shows what mirror TTA buys; `face.mirror_tta` picks the one reported."""
        from atalaia.evaluate.verification import mirror_fuse

        use = bool(self.recipe.face.mirror_tta)
        if mirror is None:
            if use:
                raise ValueError("mirror_tta needs the mirror embeddings")
            ver, _ = verification_summary(plain, ev)
            return plain, ver, {"used": False}
        fused = mirror_fuse(plain, mirror)
        emb, other = (fused, plain) if use else (plain, fused)
        ver, _ = verification_summary(emb, ev)
        alt, _ = verification_summary(other, ev)
        by_mode = {use: ver, not use: alt}
        return emb, ver, {"used": use, "acc_plain": by_mode[False]["acc_mean"], "acc_mirror": by_mode[True]["acc_mean"],
                          "auc_plain": by_mode[False]["auc"], "auc_mirror": by_mode[True]["auc"]}

    def _rescore_float(self, stage: str, ev: EvalSet) -> None:
        """A finished float stage scored with the other `face.mirror_tta` setting is re-scored, not retrained:
        the mode changes only the evaluation (mirror embeddings come from the stored ones or the saved model)."""
        from dataclasses import replace

        from atalaia.face.train import embed

        ex = self.extras[stage]
        if bool((ex.get("mirror_tta") or {}).get("used", False)) == bool(self.recipe.face.mirror_tta):
            return
        d = self._stage_dir(stage)
        with np.load(d / "embeddings.npz") as z:
            arrays = {k: z[k] for k in z.files}
        if "mirror" not in arrays:  # a run from before mirror TTA: its `emb` are the plain embeddings
            arrays = {"plain": arrays["emb"], "mirror": embed(self.model(stage), _mirrored(ev.images))}
        emb, ver, tta = self._verify(arrays["plain"], arrays["mirror"], ev)
        _save_npz(d / "embeddings.npz", emb=emb, plain=arrays["plain"], mirror=arrays["mirror"])
        self._emb[stage] = emb
        old = self.results[stage]
        res = replace(old, accuracy=ver["acc_mean"],
                      extra={**old.extra, **{k: ver[k] for k in VER_FIELDS}, "open_set": ver.get("open_set")})
        extra = {**ex, "verification": ver, "mirror_tta": tta}
        atomic_write_json(d / "metrics.json", {"result": res.to_dict(), "extra": extra, "seconds": self.timings[stage]})
        self.results[stage], self.extras[stage] = res, extra
        self.log(f"[{stage}] re-scored with face.mirror_tta={tta['used']} (not retrained): "
                 f"LFW {100 * ver['acc_mean']:.2f}%")

    def _spec(self, **over):
        from atalaia.face.train import TrainSpec

        r, f = self.recipe, self.recipe.face
        base = dict(epochs=r.train.epochs, batch_size=r.train.batch_size, learning_rate=r.train.learning_rate,
                    weight_decay=r.train.weight_decay, warmup_epochs=f.warmup_epochs, margin=f.margin,
                    margin_m=f.margin_m, margin_s=f.margin_s, ce_weight=f.ce_weight, kd_weight=f.kd_weight,
                    rkd_weight=f.rkd_weight, kd_projection=f.kd_projection, head_init=f.head_init,
                    center_teacher=f.center_teacher, anchor_kd_weight=f.anchor_kd_weight,
                    anchor_kd_scale=f.anchor_kd_scale, images_per_identity=f.images_per_identity,
                    augment=f.augment, seed=r.seed)
        base.update(over)
        return TrainSpec(**base)

    # ------------------------------------------------------------------------------------- run
    def run(self) -> dict:
        r, f = self.recipe, self.recipe.face
        t_run = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "recipe.yaml", dump_recipe(r))
        size = int(r.data.image_size[0])
        lfw_root = self._path(f.lfw_root)
        pairs_file = Path(f.pairs) if Path(f.pairs).is_absolute() else lfw_root / f.pairs
        t0 = time.perf_counter()
        ev = build_eval_set(lfw_root, pairs_file, size, enrol_per_identity=f.enrol_per_identity,
                            open_set_min_images=f.open_set_min_images, seed=r.seed, crop=f.crop)
        if ev.missing_pairs:
            self.log(f"[data] {len(ev.missing_pairs)} of {ev.n_declared} LFW pairs left out "
                     f"(missing/unreadable image; listed in the report)")
        self.log(f"[data] LFW: {len(ev.rel_paths)} images, {len(ev.left)} pairs ({time.perf_counter() - t0:.1f} s)")
        images, labels, teacher, num_classes, train_info = self._load_train()
        self.log(f"[data] training: {train_info['chips']} chips, {num_classes} identities, "
                 f"{train_info['unlabelled']} unlabelled")
        ev_key = ev.fingerprint()

        # teacher ---------------------------------------------------------------------------------
        k_teacher = stage_key("teacher-v2", ev_key, f.teacher_embeddings)

        def teacher_stage(d: Path):
            emb, info = self._teacher_lfw(ev)
            _save_npz(d / "embeddings.npz", emb=emb)
            self._emb["teacher"] = emb
            ver, _ = verification_summary(emb, ev)
            from atalaia.evaluate.verification import euclidean_distances, lfw_10fold

            dist = euclidean_distances(emb[ev.left], emb[ev.right])
            ten = lfw_10fold(-dist, ev.is_same, ev.fold)
            info["euclidean_acc_mean"], info["euclidean_acc_std"] = ten["mean"], ten["std"]
            dat, lat = self._dlib_facts(ev)
            res = self._row("teacher", "dlib_resnet_v1", "float32", None, dat // 4, ver, flash_bytes=dat,
                            host_latency_ms=lat, extra={"teacher": info})
            return res, {"verification": ver, "teacher": info}

        self._run_stage("teacher", k_teacher, teacher_stage)

        # student ---------------------------------------------------------------------------------
        train_fields = {k: v for k, v in r.to_dict()["face"].items()
                        if k not in ("train_sets", "lfw_root", "pairs", "cache_dir", "enrol_per_identity",
                                     "open_set_min_images", "tflm_max_images", "teacher_embeddings",
                                     "finetune_lr_scale", "mirror_tta")}
        # the training data enter the key by content (resolved chip paths, labels, teacher embeddings), not by
        # how the recipe spells their folders: a relative and an absolute path to one folder share the stage
        k_student = stage_key("student", train_info["fingerprint"], ev_key, r.to_dict()["train"], r.to_dict()["student"],
                         r.seed, size, train_fields)

        def student_stage(d: Path):
            from atalaia.face.train import build_student, train_embedding

            m = build_student(size, width=r.student.width, embedding_dim=f.embedding_dim, name=r.student.name,
                              head=f.student_head)
            tick = self.make_progress("student: epochs", r.train.epochs)
            tlog = train_embedding(m, images, labels, teacher, num_classes, self._spec(), progress=tick,
                                   log=lambda s: self.log(f"[student] {s}"))
            return self._float_stage("student", m, d, ev, tlog, {"train_data": train_info})

        self._run_stage("student", k_student, student_stage)
        self._rescore_float("student", ev)
        final = "student"

        # channel pruning -------------------------------------------------------------------------
        cp = r.prune.channel
        if cp.enabled and cp.ratio > 0:
            k_pr = stage_key("pruned_channel", k_student, r.to_dict()["prune"]["channel"], f.finetune_lr_scale)

            def pruned_stage(d: Path):
                from atalaia.compress.prune import channel_prune
                from atalaia.face.train import train_embedding

                m, summary = channel_prune(self.model("student"), cp.ratio, cp.criterion)
                heads = self._stage_dir("student") / "heads.npz"
                init = dict(np.load(heads)) if heads.is_file() else {}
                tick = self.make_progress("pruned_channel: epochs", cp.epochs)
                spec = self._spec(epochs=cp.epochs, learning_rate=r.train.learning_rate * f.finetune_lr_scale,
                                  warmup_epochs=0.0, seed=r.seed + 4)
                tlog = train_embedding(m, images, labels, teacher, num_classes, spec, progress=tick,
                                       log=lambda s: self.log(f"[pruned_channel] {s}"),
                                       init_head=init.get("head"), init_proj=init.get("proj"))
                return self._float_stage("pruned_channel", m, d, ev, tlog, {"summary": summary})

            self._run_stage("pruned_channel", k_pr, pruned_stage)
            self._rescore_float("pruned_channel", ev)
            final = "pruned_channel"

        # int8 LiteRT -----------------------------------------------------------------------------
        k_q = stage_key("int8_litert-v2", self.keys[final], r.to_dict()["quantize"], r.to_dict()["evaluate"],
                        *(["mirror_tta"] if f.mirror_tta else []))

        def int8_stage(d: Path):
            from atalaia.deploy.targets import fits
            from atalaia.deploy.tflite import TFLiteRunner, convert_int8
            from atalaia.deploy.tflm import check_tflm

            model = self.model(final)
            from atalaia.face.data import representative_inputs

            rep = representative_inputs(images, r.quantize.representative_samples, r.seed)
            blob = convert_int8(model, rep, per_channel=r.quantize.per_channel, strip=r.quantize.strip_strings)
            atomic_write_bytes(d / "model.tflite", blob)
            runner = TFLiteRunner(blob)
            xq = runner.quantize_input(ev.images.astype(np.float32) / 255.0)
            raw, raw_m = runner.predict_raw(xq), runner.predict_raw(_mirrored(xq))
            emb, ver, tta = self._verify(runner.dequantize_output(raw), runner.dequantize_output(raw_m), ev)
            _save_npz(d / "embeddings.npz", emb=emb, raw=raw, raw_mirror=raw_m)
            self._emb["int8_litert"] = emb
            rep_t = check_tflm(blob, xq[: min(32, len(xq))])
            # one LFW chip + its host int8 embedding: the firmware's on-device self-test (`atalaia export`)
            _save_npz(d / "self_test.npz", input_q=xq[:1], output_q=raw[:1])
            from atalaia.evaluate.verification import impostor_tail

            facts = face_model_facts(r, runner, ver)
            facts["impostor_tail"] = impostor_tail(emb, [Path(p).parent.name for p in ev.rel_paths], seed=r.seed)
            atomic_write_text(d / "face_model.json", json.dumps(facts, indent=2))
            fl = self._embeddings(final)
            agree = float(np.mean(np.sum(_unit(fl) * _unit(emb), axis=1)))
            res = self._row("int8_litert", model.name, "int8", blob, self.results[final].params, ver,
                            arena_bytes=int(rep_t.arena_bytes))
            extra = {"verification": ver, "mirror_tta": tta, "source_stage": final,
                     "float_acc_mean": self.results[final].accuracy,
                     "accuracy_drop_pp": round(100 * (self.results[final].accuracy - ver["acc_mean"]), 3),
                     "mean_cosine_to_float_embedding": agree,
                     "input_quantization": {"scale": runner.input_scale, "zero_point": runner.input_zero_point},
                     "output_quantization": {"scale": runner.output_scale, "zero_point": runner.output_zero_point},
                     "tflm": {**rep_t.to_dict(), "passed": True},
                     "fits": {t: fits(t, len(blob), int(rep_t.arena_bytes)) for t in r.evaluate.targets}}
            return res, extra

        self._run_stage("int8_litert", k_q, int8_stage)

        # int8 TFLM -------------------------------------------------------------------------------
        k_tflm = stage_key("int8_tflm", k_q, f.tflm_max_images)

        def tflm_stage(d: Path):
            from atalaia.deploy.tflite import TFLiteRunner
            from atalaia.deploy.tflm import _runtime

            blob = (self._stage_dir("int8_litert") / "model.tflite").read_bytes()
            runner = TFLiteRunner(blob)
            with np.load(self._stage_dir("int8_litert") / "embeddings.npz") as z:
                lite = {"raw": z["raw"], "raw_mirror": z["raw_mirror"] if "raw_mirror" in z.files else None}
            xq = runner.quantize_input(ev.images.astype(np.float32) / 255.0)
            inputs = {"raw": xq} | ({"raw_mirror": _mirrored(xq)} if f.mirror_tta else {})
            n = len(xq) if f.tflm_max_images is None else min(len(xq), f.tflm_max_images)
            arena = int(self.results["int8_litert"].arena_bytes or 0)
            it = _runtime().Interpreter.from_bytes(blob, arena_size=arena + 4096)
            out, diffs = {}, []
            t0 = time.perf_counter()
            for name, x in inputs.items():  # the first n images (and their mirrors) through TFLM, LiteRT's rest
                raw = lite[name].copy()
                for i in range(n):
                    it.set_input(x[i : i + 1], 0)
                    it.invoke()
                    raw[i] = np.asarray(it.get_output(0)).reshape(raw.shape[1:])
                out[name] = raw
                diffs.append(np.abs(raw[:n].astype(np.int32) - lite[name][:n].astype(np.int32)))
            tflm_s = time.perf_counter() - t0
            del it
            diff = np.concatenate(diffs)
            mirror = runner.dequantize_output(out["raw_mirror"]) if "raw_mirror" in out else None
            emb, ver, tta = self._verify(runner.dequantize_output(out["raw"]), mirror, ev)
            _save_npz(d / "embeddings.npz", emb=emb, **out)
            self._emb["int8_tflm"] = emb
            src = self.results["int8_litert"]
            runs = n * len(inputs)
            parity = {"images": int(n), "of": int(len(xq)), "mirrored_too": bool(f.mirror_tta),
                      "max_abs_diff_steps": int(diff.max()) if diff.size else 0,
                      "exact_fraction": float(np.mean(diff == 0)) if diff.size else 1.0,
                      "litert_used_for_rest": int(len(xq) - n), "tflm_seconds": round(tflm_s, 2),
                      "tflm_ms_per_image_host": round(1e3 * tflm_s / max(runs, 1), 3)}
            self.log(f"[int8_tflm] {runs} inferences through TFLM: parity max diff {parity['max_abs_diff_steps']} "
                     f"steps, {100 * parity['exact_fraction']:.2f}% bit-exact")
            res = StageResult(stage="int8_tflm", model=src.model, dtype="int8", params=src.params, macs=src.macs,
                              flash_bytes=src.flash_bytes, accuracy=ver["acc_mean"], macro_f1=float("nan"),
                              host_latency_ms=src.host_latency_ms, arena_bytes=src.arena_bytes,
                              est_latency_ms=dict(src.est_latency_ms), gzip_bytes=src.gzip_bytes,
                              extra={k: ver[k] for k in VER_FIELDS} | {"open_set": ver.get("open_set"), "parity": parity,
                                                                      "macro_f1_note": F1_NOTE})
            return res, {"verification": ver, "mirror_tta": tta, "parity": parity}

        self._run_stage("int8_tflm", k_tflm, tflm_stage)
        return self._write_report(ev, train_info, time.perf_counter() - t_run)

    # ------------------------------------------------------------------------------------- teacher facts
    def _dlib_facts(self, ev: EvalSet) -> tuple[int, float | None]:
        """(size of dlib's ResNet weight file, median dlib seconds per chip in ms) — latency None if no dlib."""
        try:
            from atalaia.models.dlib_weights import import_dlib

            _, frm = import_dlib()
            dat = Path(frm.face_recognition_model_location()).stat().st_size
        except (ImportError, OSError) as e:
            self.log(f"[teacher] dlib not available ({e}): teacher size/latency not measured")
            return 0, None
        try:
            from atalaia.face.data import read_grey
            from atalaia.models.dlib_teacher import DlibEmbedder

            e = DlibEmbedder(cache=None)
            chip = read_grey(ev.image_root / ev.rel_paths[0], 112)
            e.embed_chips(chip[None])
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                e.embed_chips(chip[None])
                times.append(1e3 * (time.perf_counter() - t0))
            return int(dat), round(float(np.median(times)), 3)
        except (ImportError, DataError):
            return int(dat), None

    # ------------------------------------------------------------------------------------- report
    def _write_report(self, ev: EvalSet, train_info: dict, seconds: float) -> dict:
        from atalaia.evaluate.verification import plot_roc, roc

        r = self.recipe
        stages = [s for s in STAGES if s in self.results]
        curves = {}
        for s in stages:
            emb = self._embeddings(s).astype(np.float64)
            from atalaia.evaluate.verification import cosine_scores

            sc = cosine_scores(emb[ev.left], emb[ev.right])
            fpr, tpr, _ = roc(sc, ev.is_same)
            curves[STAGE_LABELS[s]] = (fpr, tpr)
        plot = plot_roc(curves, self.out / "plots" / "roc_lfw.png", title=f"LFW {ev.pairs_file.name}, cosine")
        models = {s: {**self.extras[s]["verification"], "label": STAGE_LABELS[s],
                      "mirror_tta": self.extras[s].get("mirror_tta")} for s in stages}
        # Open set at a stricter operating point: 1:N matching against many templates accepts a stranger far
        # more often than one 1:1 pair does, so also report the threshold at pair FAR 1e-3 (chosen on pairs).
        from atalaia.evaluate.verification import open_set_identification

        if len(ev.gallery):
            for s in stages:
                th = models[s].get("threshold_at_far_0.001")
                if th is not None and np.isfinite(th):
                    emb = self._embeddings(s)
                    models[s]["open_set_at_far_1e-3"] = open_set_identification(
                        emb[ev.gallery], ev.gallery_ids, emb[ev.probes], ev.probe_ids, float(th))
            # ... and at the threshold `atalaia access` uses: ~1 % of strangers' attempts accepted against this
            # gallery size, from the tail of all cross-identity pair scores (see verification.open_set_threshold)
            from atalaia.evaluate.verification import impostor_tail, open_set_threshold

            ids = [Path(p).parent.name for p in ev.rel_paths]
            for s in stages:
                emb = self._embeddings(s)
                tail = impostor_tail(emb, ids, seed=r.seed)
                if tail["thresholds"]:
                    th, pfar = open_set_threshold(tail, len(ev.gallery), 1e-2)
                    models[s]["open_set_at_open_far_1e-2"] = open_set_identification(
                        emb[ev.gallery], ev.gallery_ids, emb[ev.probes], ev.probe_ids, th) | {"pairwise_far": pfar}
        rep: dict[str, Any] = {
            "atalaia_version": __version__, "task": "verification", "recipe_name": r.name, "created": now_utc(),
            "recipe": r.to_dict(), "targets": list(r.evaluate.targets),
            "dataset": {"train": train_info, "eval": ev.summary()},
            "stages": [self.results[s].to_dict() for s in stages],
            "notes": NOTES,
            "timings_s": {k: round(v, 2) for k, v in self.timings.items()} | {"total_this_invocation": round(seconds, 1)},
            "history": {s: self.extras[s]["history"] for s in stages if "history" in self.extras[s]},
            "verification": {
                "protocol": "LFW View 2 pairs file, 10 folds; cosine similarity; threshold maximising accuracy on "
                            "9 folds, accuracy on the 10th; std over folds (ddof=0); TAR at FAR from the pooled ROC",
                "pairs_file": str(ev.pairs_file), "pairs_used": int(len(ev.left)),
                "pairs_missing": len(ev.missing_pairs), "models": models,
                "roc_plot": str(Path(plot).relative_to(self.out)),
                "teacher": self.extras.get("teacher", {}).get("teacher"),
            },
        }
        if "pruned_channel" in self.results:
            s, p = self.results["student"], self.results["pruned_channel"]
            rep["channel_pruning"] = {"ratio": r.prune.channel.ratio, "criterion": r.prune.channel.criterion,
                                      "params_before": s.params, "params_after": p.params, "macs_before": s.macs,
                                      "macs_after": p.macs, "flash_before": s.flash_bytes, "flash_after": p.flash_bytes,
                                      "layers": self.extras["pruned_channel"].get("summary", {}).get("layers", {})}
        if "int8_litert" in self.results:
            ex = self.extras["int8_litert"]
            rep["int8"] = {k: ex[k] for k in ("source_stage", "float_acc_mean", "accuracy_drop_pp",
                                              "mean_cosine_to_float_embedding", "tflm", "fits",
                                              "input_quantization", "output_quantization")}
            if "int8_tflm" in self.extras:
                rep["int8"]["tflm_lfw_parity"] = self.extras["int8_tflm"]["parity"]
        from atalaia.report import write_report

        write_report(_finite(rep), self.out)  # report.json (strict JSON), report.md, report.html, plots
        return rep


def _mirrored(images: np.ndarray) -> np.ndarray:
    """(N, H, W, C) images flipped left-right (contiguous, for the interpreters)."""
    return np.ascontiguousarray(np.asarray(images)[:, :, ::-1])


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _finite(x: Any) -> Any:
    """NaN/inf -> None so report.json is strict JSON."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


__all__ = ["FacePipeline", "STAGES", "STAGE_LABELS"]
