"""`Pipeline(recipe, out_dir).run()`: every compression stage, in order, in a resumable run folder.

Run folder layout (`runs/<name>/`):

    recipe.yaml                    the resolved recipe (every default filled in)
    <stage>/model.keras            the stage's float model (int8 stage: model_int8.tflite)
    <stage>/model.tflite           the model as it would be flashed (float32, or int8 for the int8 stage)
    <stage>/metrics.json           the stage's StageResult and extras
    <stage>/DONE.json              completion marker, written last by atomic rename; holds the stage key
    report.json / report.md / report.html / plots/

A stage is skipped when its DONE.json holds the same key; the key hashes the recipe sections the stage
depends on, the dataset content and the keys of its upstream stages, so changing e.g. `distill.alpha`
re-runs distillation and everything after it, and nothing before. A `kill -9` loses at most the stage
that was running.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atalaia import __version__
from atalaia.config import Recipe, dump_recipe
from atalaia.data.dataset import Split, load_identity_folder, split_dataset, to_float
from atalaia.evaluate.result import StageResult
from atalaia.ioutil import atomic_write_bytes, atomic_write_text
from atalaia.runfolder import StagedRun, now_utc, save_keras, stage_key

STAGES = ("teacher", "baseline", "distilled", "pruned_magnitude", "pruned_channel", "int8")

NOTES = [
    "Flash = bytes of the .tflite file as flashed (float32 for float stages, int8 for the int8 stage); "
    "never a gzip size.",
    "Unstructured (magnitude) sparsity does not shrink a TFLM model: TFLM has no sparse kernels, so zeroed "
    "weights cost the same flash, RAM and time. Its gzip size is shown only to expose the difference.",
    "Structured channel pruning removes whole channels and rebuilds a narrower network: that is what shrinks "
    "flash, arena and MACs.",
    "MCU latencies are estimates (MACs-based, calibrated on published TFLM timings), labelled 'est.'; "
    "host latency is measured with LiteRT reference kernels, 1 thread, median.",
    "Arena bytes are measured in the real TFLM runtime (tflite-micro Python interpreter, reference kernels).",
    "KD loss convention: loss = alpha*CE(y, s) + (1-alpha)*T^2*KL(softmax(t/T) || softmax(s/T)).",
]


@dataclass
class _Ctx:
    split: Split
    input_shape: tuple[int, int, int]
    num_classes: int
    data_key: str


def teacher_stage_key(recipe: Recipe, data_key: str) -> str:
    """The teacher stage's key: the tuner reuses a teacher the pipeline already trained when keys match."""
    base = [data_key, recipe.section_hash("data", "train", "seed")]
    return stage_key("teacher", base, recipe.to_dict()["teacher"])


class Pipeline(StagedRun):
    """Runs a recipe end to end. `progress` gets (stage, message) lines; `epoch_progress` per-epoch ticks."""

    def __init__(self, recipe: Recipe, out_dir: str | Path, **kw):
        super().__init__(out_dir, **kw)
        self.recipe = recipe

    # ---------------------------------------------------------------- data
    def _prepare(self) -> _Ctx:
        r = self.recipe
        ds = load_identity_folder(r.data_root(), image_size=r.data.image_size, channels=r.data.channels,
                                  min_images_per_class=r.data.min_images_per_class, max_classes=r.data.max_classes)
        split = split_dataset(ds, r.data.split, r.seed)
        h, w = r.data.image_size
        self.dataset_info = {
            "root": str(r.data_root()), "num_classes": ds.num_classes, "class_names": list(ds.class_names),
            "images": int(len(ds.labels)), "train": int(len(split.train.labels)), "val": int(len(split.val.labels)),
            "test": int(len(split.test.labels)), "image_size": [h, w], "channels": r.data.channels,
            "fingerprint": ds.fingerprint(),
        }
        return _Ctx(split, (h, w, r.data.channels), ds.num_classes, ds.fingerprint())

    # ---------------------------------------------------------------- evaluation of a float stage
    def _evaluate_float(self, stage: str, model, d: Path, ctx: _Ctx, **fields) -> StageResult:
        from atalaia.deploy.tflite import convert_float
        from atalaia.evaluate import profile

        blob = convert_float(model)
        atomic_write_bytes(d / "model.tflite", blob)
        save_keras(model, d / "model.keras")
        self._models[stage] = model
        logits = np.asarray(model.predict(to_float(ctx.split.test.images), batch_size=256, verbose=0))
        return self._result(stage, model.name, "float32", blob, logits, ctx,
                            params=profile.count_params(model), **fields)

    def _result(self, stage: str, model_name: str, dtype: str, blob: bytes, logits: np.ndarray, ctx: _Ctx,
                *, params: int, **fields) -> StageResult:
        from atalaia.deploy.targets import estimate_latency_ms
        from atalaia.evaluate import profile
        from atalaia.evaluate.metrics import classification_metrics

        m = classification_metrics(ctx.split.test.labels, np.argmax(logits, axis=1), ctx.num_classes)
        macs = profile.count_macs(blob)
        est = {t: round(float(estimate_latency_ms(macs["by_op"], macs["n_ops"], t)), 3)
               for t in self.recipe.evaluate.targets}
        return StageResult(
            stage=stage, model=model_name, dtype=dtype, params=int(params), macs=int(macs["total"]),
            flash_bytes=len(blob), accuracy=m["accuracy"], macro_f1=m["macro_f1"],
            host_latency_ms=round(float(profile.host_latency_ms(blob, runs=self.recipe.evaluate.latency_runs)), 4),
            est_latency_ms=est, gzip_bytes=int(profile.gzip_size(blob)), **fields)

    def _train(self, model, ctx: _Ctx, stage: str, *, teacher=None, epochs: int | None = None,
               callbacks=None, seed_offset: int = 0):
        from atalaia.compress.distill import train_classifier

        r = self.recipe
        epochs = r.train.epochs if epochs is None else epochs
        tick = self.make_progress(f"{stage}: epochs", epochs)
        alpha, temp = (r.distill.alpha, r.distill.temperature) if teacher is not None else (1.0, 1.0)
        return train_classifier(model, ctx.split, r.train, augment=r.data.augment, teacher=teacher, alpha=alpha,
                                temperature=temp, epochs=epochs, seed=r.seed + seed_offset, callbacks=callbacks,
                                progress=tick)

    def _student(self, ctx: _Ctx):
        from atalaia.models import create_model

        s = self.recipe.student
        return create_model(s.name, num_classes=ctx.num_classes, input_shape=ctx.input_shape, width=s.width)

    # ---------------------------------------------------------------- stages
    def run(self) -> dict:
        import keras

        if self.recipe.distill.tune:  # alpha/T (and other tuned knobs) from the study in <out>/tune
            from atalaia.compress.tune import tuned_recipe

            self.recipe = tuned_recipe(self.recipe, self.out)
        r = self.recipe
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "recipe.yaml", dump_recipe(r))
        ctx = self._prepare()
        base = [ctx.data_key, r.section_hash("data", "train", "seed")]

        # teacher
        k_teacher = teacher_stage_key(r, ctx.data_key)

        def teacher(d: Path):
            from atalaia.models import create_model

            m = create_model(r.teacher.name, num_classes=ctx.num_classes, input_shape=ctx.input_shape,
                             width=r.teacher.width)
            h = self._train(m, ctx, "teacher", seed_offset=1)
            return self._evaluate_float("teacher", m, d, ctx), {"history": h.to_dict()}

        self._run_stage("teacher", k_teacher, teacher)

        # baseline student: labels only, same seed and epochs as the distilled one
        k_base = stage_key("baseline", base, r.to_dict()["student"])

        def baseline(d: Path):
            m = self._student(ctx)
            h = self._train(m, ctx, "baseline")
            return self._evaluate_float("baseline", m, d, ctx), {"history": h.to_dict()}

        self._run_stage("baseline", k_base, baseline)

        # distilled student
        alpha, temperature = r.distill.alpha, r.distill.temperature
        k_dist = stage_key("distilled", k_base, k_teacher, alpha, temperature)

        def distilled(d: Path):
            m = self._student(ctx)
            h = self._train(m, ctx, "distilled", teacher=self.model("teacher"))
            kd = {"alpha": alpha, "temperature": temperature}
            return self._evaluate_float("distilled", m, d, ctx, kd=kd), {"history": h.to_dict()}

        self._run_stage("distilled", k_dist, distilled)
        final_float = "distilled"

        # magnitude pruning (a side branch: shows what unstructured sparsity does and does not buy)
        mp = r.prune.magnitude
        if mp.enabled:
            k_mag = stage_key("pruned_magnitude", k_dist, r.to_dict()["prune"]["magnitude"])

            def pruned_magnitude(d: Path):
                from atalaia.compress import prune

                m = keras.models.clone_model(self.model("distilled"))
                m.set_weights(self.model("distilled").get_weights())
                steps_per_epoch = int(np.ceil(len(ctx.split.train.labels) / min(r.train.batch_size,
                                                                                len(ctx.split.train.labels))))
                total = max(1, mp.epochs * steps_per_epoch)
                schedule = prune.PolynomialDecay(
                    initial_sparsity=0.0, final_sparsity=mp.target_sparsity,
                    begin_step=int(mp.begin_fraction * total), end_step=max(1, int(mp.end_fraction * total)),
                    frequency=mp.frequency)
                pruner = prune.MagnitudePruner(m, schedule)
                # fine-tune with KD at a lower learning rate; no best-epoch restore (sparsity must reach target)
                from atalaia.compress.distill import train_classifier

                h = train_classifier(m, ctx.split, r.train, augment=r.data.augment, teacher=self.model("teacher"),
                                     alpha=alpha, temperature=temperature, epochs=mp.epochs,
                                     learning_rate=r.train.learning_rate * 0.3, seed=r.seed + 3,
                                     callbacks=[prune.PruningCallback(pruner)], restore_best=False,
                                     progress=self.make_progress("pruned_magnitude: epochs", mp.epochs))
                # a very short fine-tune may end before the schedule's last step: impose the target sparsity
                pruner.update(schedule.end_step)
                pruner.apply()
                pruner.strip()
                sp = prune.sparsity_report(m)
                res = self._evaluate_float("pruned_magnitude", m, d, ctx, sparsity=float(sp["overall"]),
                                           kd={"alpha": alpha, "temperature": temperature})
                return res, {"history": h.to_dict(), "sparsity": sp}

            self._run_stage("pruned_magnitude", k_mag, pruned_magnitude)

        # structured channel pruning + KD fine-tune
        cp = r.prune.channel
        if cp.enabled:
            k_ch = stage_key("pruned_channel", k_dist, r.to_dict()["prune"]["channel"])

            def pruned_channel(d: Path):
                from atalaia.compress import prune

                m, summary = prune.channel_prune(self.model("distilled"), cp.ratio, cp.criterion)
                h = self._train(m, ctx, "pruned_channel", teacher=self.model("teacher"), epochs=cp.epochs,
                                seed_offset=4)
                res = self._evaluate_float("pruned_channel", m, d, ctx,
                                           kd={"alpha": alpha, "temperature": temperature})
                return res, {"history": h.to_dict(), "summary": summary}

            self._run_stage("pruned_channel", k_ch, pruned_channel)
            final_float = "pruned_channel"

        # int8 PTQ of the final float model + TFLM verification
        k_q = stage_key("int8", self.keys[final_float], r.to_dict()["quantize"], r.to_dict()["evaluate"])

        def int8(d: Path):
            return self._quantize_stage(final_float, d, ctx)

        self._run_stage("int8", k_q, int8)
        return self._write_report(ctx, final_float)

    def _quantize_stage(self, source: str, d: Path, ctx: _Ctx) -> tuple[StageResult, dict]:
        from atalaia.deploy.targets import fits
        from atalaia.deploy.tflite import TFLiteRunner, convert_int8
        from atalaia.deploy.tflm import check_tflm

        r = self.recipe
        model = self.model(source)
        rng = np.random.default_rng(r.seed)
        train_x = to_float(ctx.split.train.images)
        rep = train_x[rng.permutation(len(train_x))[: r.quantize.representative_samples]]
        blob = convert_int8(model, rep, per_channel=r.quantize.per_channel, strip=r.quantize.strip_strings)
        atomic_write_bytes(d / "model.tflite", blob)
        runner = TFLiteRunner(blob)
        x_test = to_float(ctx.split.test.images)
        logits_q = runner.predict(x_test)
        float_logits = np.asarray(model.predict(x_test, batch_size=256, verbose=0))
        sample_q = runner.quantize_input(x_test[: min(32, len(x_test))])
        report = check_tflm(blob, sample_q)
        # one input + its host int8 output, for the firmware's on-device self-test (`atalaia export`)
        buf = io.BytesIO()
        np.savez(buf, input_q=sample_q[:1], output_q=runner.predict_raw(sample_q[:1]))
        atomic_write_bytes(d / "self_test.npz", buf.getvalue())
        res = self._result("int8", model.name, "int8", blob, logits_q, ctx,
                           params=self.results[source].params, arena_bytes=int(report.arena_bytes),
                           kd=self.results[source].kd)
        float_acc = self.results[source].accuracy
        agreement = float(np.mean(np.argmax(logits_q, 1) == np.argmax(float_logits, 1)))
        extra = {
            "source_stage": source,
            "float_accuracy": float_acc,
            "int8_accuracy": res.accuracy,
            "accuracy_drop_pp": round(100 * (float_acc - res.accuracy), 3),
            "top1_agreement": agreement,
            "tflm": {**report.to_dict(), "passed": True},
            "fits": {t: fits(t, len(blob), int(report.arena_bytes)) for t in r.evaluate.targets},
            "test_predictions": np.argmax(logits_q, 1).tolist(),
        }
        return res, extra

    # ---------------------------------------------------------------- report
    def _write_report(self, ctx: _Ctx, final_float: str) -> dict:
        from atalaia.evaluate.metrics import classification_metrics

        r = self.recipe
        stages = [self.results[s] for s in STAGES if s in self.results]
        rep: dict[str, Any] = {
            "atalaia_version": __version__, "recipe_name": r.name, "created": now_utc(),
            "recipe": r.to_dict(), "dataset": self.dataset_info, "targets": list(r.evaluate.targets),
            "stages": [s.to_dict() for s in stages],
            "notes": [*NOTES, f"The test split has {len(ctx.split.test.labels)} images: one image is "
                      f"{100 / len(ctx.split.test.labels):.2f} pp of accuracy, so differences of a few images "
                      "between stages are within sampling noise."],
            "timings_s": {k: round(v, 2) for k, v in self.timings.items()},
            "history": {s: self.extras[s]["history"] for s in STAGES if "history" in self.extras.get(s, {})},
        }
        b, dst = self.results["baseline"], self.results["distilled"]
        rep["kd"] = {"convention": "loss = alpha*CE + (1-alpha)*T^2*KL(p_t^T || p_s^T)",
                     "alpha": r.distill.alpha, "temperature": r.distill.temperature,
                     "gain_accuracy": dst.accuracy - b.accuracy, "gain_macro_f1": dst.macro_f1 - b.macro_f1}
        if "pruned_magnitude" in self.results:
            pm = self.results["pruned_magnitude"]
            rep["magnitude_pruning"] = {
                "target_sparsity": r.prune.magnitude.target_sparsity, "achieved_sparsity": pm.sparsity,
                "flash_bytes": pm.flash_bytes, "gzip_bytes": pm.gzip_bytes,
                "dense_flash_bytes": dst.flash_bytes, "dense_gzip_bytes": dst.gzip_bytes,
                "note": NOTES[1]}
        if "pruned_channel" in self.results:
            pc = self.results["pruned_channel"]
            summary = self.extras["pruned_channel"].get("summary", {})
            rep["channel_pruning"] = {
                "ratio": r.prune.channel.ratio, "criterion": r.prune.channel.criterion,
                "params_before": dst.params, "params_after": pc.params, "macs_before": dst.macs,
                "macs_after": pc.macs, "flash_before": dst.flash_bytes, "flash_after": pc.flash_bytes,
                "layers": summary.get("layers", [])}
        if "int8" in self.results:
            ex = self.extras["int8"]
            rep["int8"] = {k: ex[k] for k in ("source_stage", "float_accuracy", "int8_accuracy", "accuracy_drop_pp",
                                              "top1_agreement", "tflm", "fits")}
            preds = np.asarray(ex["test_predictions"])
            m = classification_metrics(ctx.split.test.labels, preds, ctx.num_classes)
            rep["final"] = {"stage": "int8", "confusion_matrix": m["confusion_matrix"].tolist(),
                            "class_names": self.dataset_info["class_names"],
                            "per_class": {k: v.tolist() for k, v in m["per_class"].items()}}
        from atalaia.report import write_report

        write_report(rep, self.out)
        return rep


def make_pipeline(recipe: Recipe, out_dir: str | Path, **kw):
    """The pipeline for the recipe's task: closed-set `Pipeline` or face-embedding `FacePipeline`."""
    if recipe.task == "verification":
        from atalaia.face.pipeline import FacePipeline

        return FacePipeline(recipe, out_dir, **kw)
    return Pipeline(recipe, out_dir, **kw)


def run(recipe: Recipe, out_dir: str | Path, **kw) -> dict:
    """Public verb: run a recipe end to end into `out_dir`; returns the report dict."""
    return make_pipeline(recipe, out_dir, **kw).run()
