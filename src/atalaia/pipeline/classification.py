"""The closed-set plan (`task: classification`): identities of an identity-folder dataset.

    teacher           trained here (recipe.teacher)
    baseline          student on labels only
    distilled         same student, same seed and epochs, + Hinton KD from the teacher
    pruned_magnitude  unstructured magnitude pruning + KD fine-tune            [side branch, optional]
    pruned_channel    structured channel pruning of the distilled student + KD fine-tune   [optional]
    int8              full-integer PTQ of the last float stage, checked in TFLM

Changing `distill.alpha` re-runs distillation and everything after it, and nothing before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from atalaia import __version__
from atalaia.compress import prune
from atalaia.compress.distill import TrainHistory, train_classifier
from atalaia.data.dataset import Split, load_identity_folder, split_dataset, to_float
from atalaia.evaluate import profile
from atalaia.evaluate.intervals import accuracy_interval, bootstrap_macro_f1, paired_bootstrap
from atalaia.evaluate.metrics import classification_metrics
from atalaia.evaluate.result import StageResult
from atalaia.models import create_model
from atalaia.models.dlib_head import dlib_costs_ms, fit_dlib_head, load_originals
from atalaia.pipeline.plan import Plan, Stage, key_of
from atalaia.pipeline.runfolder import now_utc
from atalaia.pipeline.stages import profiled_row, quantize_and_check, save_float, save_npz, save_self_test
from atalaia.report.schema import Report

DLIB_HEAD = "dlib_head"
DLIB_HEAD_NOTE = ("teacher = dlib's pretrained ResNet face embedder (frozen) + Dropout + Dense trained on the training "
                  "split, on the original images; flash = dlib's weight file + the head, params = file bytes / 4 + "
                  "head (approximate), MACs not counted, host latency = dlib CPU time per image (not an MCU model)")

STAGES = ("teacher", "baseline", "distilled", "pruned_magnitude", "pruned_channel", "int8")

NOTES = (
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
)


@dataclass(frozen=True)
class ClosedSetData:
    split: Split
    input_shape: tuple[int, int, int]
    num_classes: int
    key: str  # content fingerprint of the dataset
    info: dict


def load_closed_set(recipe) -> ClosedSetData:
    """The recipe's identity folder, split with its seed (the tuner uses the same split: same val set)."""
    r = recipe
    ds = load_identity_folder(r.data_root(), image_size=r.data.image_size, channels=r.data.channels,
                              min_images_per_class=r.data.min_images_per_class, max_classes=r.data.max_classes,
                              max_pixels=r.data.max_image_pixels)
    split = split_dataset(ds, r.data.split, r.seed)
    h, w = r.data.image_size
    info = {"root": str(r.data_root()), "num_classes": ds.num_classes, "class_names": list(ds.class_names),
            "images": int(len(ds.labels)), "train": int(len(split.train.labels)),
            "val": int(len(split.val.labels)), "test": int(len(split.test.labels)), "image_size": [h, w],
            "channels": r.data.channels, "fingerprint": ds.fingerprint()}
    return ClosedSetData(split, (h, w, r.data.channels), ds.num_classes, ds.fingerprint(), info)


def teacher_consumes(recipe, data_key: str) -> tuple:
    """What the teacher stage consumes; the tuner derives the same key to reuse a teacher the run trained."""
    return (data_key, recipe.data, recipe.train, recipe.seed, recipe.teacher)


def teacher_stage_key(recipe, data_key: str) -> str:
    """The teacher stage's key as the plan derives it (the tuner reuses a teacher the run already trained)."""
    return key_of(Stage("teacher", _unused_body, teacher_consumes(recipe, data_key)), {})


def _unused_body(d: Path) -> tuple[StageResult, dict]:
    raise AssertionError("a key-only stage is never run")


class ClassificationPlan(Plan):
    task = "classification"

    def prepare(self) -> None:
        self.data = load_closed_set(self.recipe)
        self._models: dict[str, keras.Model] = {}

    # ------------------------------------------------------------------------------------------ helpers
    def model(self, stage: str) -> keras.Model:
        if stage not in self._models:
            self._models[stage] = self.run.folder.model(stage)
        return self._models[stage]

    def _train(self, model, stage: str, *, teacher: str | None = None, epochs: int | None = None,
               seed_offset: int = 0, **kw) -> TrainHistory:
        r = self.recipe
        epochs = r.train.epochs if epochs is None else epochs
        alpha, temp = (r.distill.alpha, r.distill.temperature) if teacher else (1.0, 1.0)
        return train_classifier(model, self.data.split, r.train, augment=r.data.augment,
                                **(self.teacher_kd() if teacher else {}), alpha=alpha, temperature=temp,
                                epochs=epochs, seed=r.seed + seed_offset,
                                progress=self.progress(f"{stage}: epochs", epochs), **kw)

    def _float_row(self, stage: str, model, d: Path, **fields) -> StageResult:
        blob = save_float(model, d)
        self._models[stage] = model
        logits = np.asarray(model.predict(to_float(self.data.split.test.images), batch_size=256, verbose=0))
        self.test_predictions = np.argmax(logits, 1).tolist()  # into the stage's extra: paired intervals
        return self._row(stage, model.name, "float32", blob, logits, params=profile.count_params(model), **fields)

    def _row(self, stage: str, model_name: str, dtype: str, blob: bytes, logits: np.ndarray, **fields) -> StageResult:
        m = classification_metrics(self.data.split.test.labels, np.argmax(logits, axis=1), self.data.num_classes)
        return profiled_row(self.recipe, blob, stage=stage, model=model_name, dtype=dtype,
                            accuracy=m["accuracy"], macro_f1=m["macro_f1"], **fields)

    def _kd(self) -> dict:
        return {"alpha": self.recipe.distill.alpha, "temperature": self.recipe.distill.temperature}

    def _student(self):
        s = self.recipe.student
        return create_model(s.name, num_classes=self.data.num_classes, input_shape=self.data.input_shape,
                            width=s.width)

    # ------------------------------------------------------------------------------------------ stages
    def stages(self) -> list[Stage]:
        r, key = self.recipe, self.data.key
        student = (key, r.data, r.train, r.seed, r.student)
        out = [Stage("teacher", self.teacher, teacher_consumes(r, key)),
               Stage("baseline", self.baseline, student),
               Stage("distilled", self.distilled, (r.distill.alpha, r.distill.temperature),
                     needs=("baseline", "teacher"))]
        if r.prune.magnitude.enabled:
            out.append(Stage("pruned_magnitude", self.pruned_magnitude, (r.prune.magnitude,),
                             needs=("distilled", "teacher")))
        self.final_float = "distilled"
        if r.prune.channel.enabled:
            out.append(Stage("pruned_channel", self.pruned_channel, (r.prune.channel,),
                             needs=("distilled", "teacher")))
            self.final_float = "pruned_channel"
        out.append(Stage("int8", self.int8, (r.quantize, r.evaluate), needs=(self.final_float,)))
        return out

    def teacher(self, d: Path):
        r = self.recipe
        if r.teacher.name == DLIB_HEAD:
            return self._dlib_head_teacher(d)
        m = create_model(r.teacher.name, num_classes=self.data.num_classes, input_shape=self.data.input_shape,
                         width=r.teacher.width)
        h = self._train(m, "teacher", seed_offset=1)
        row = self._float_row("teacher", m, d)
        return row, {"history": h.to_dict(), "test_predictions": self.test_predictions}

    def _dlib_head_teacher(self, d: Path):
        """The thesis' kind of teacher: frozen pretrained dlib face embedding + Dropout + Dense trained here, on the
        original images (the 32x32 student inputs are too small for dlib). Its logits for the training images are
        the KD table of every distilled stage (one row per image: see `models.dlib_head`)."""
        sp, cache = self.data.split, self.out / "cache" / "dlib_head_embeddings.npz"
        head = fit_dlib_head(load_originals(sp.train.paths), sp.train.labels, num_classes=self.data.num_classes,
                             cache=cache)
        head.save(d / "head.npz")
        save_npz(d / "train_logits.npz", logits=head.logits(load_originals(sp.train.paths), cache=cache))
        test_logits = head.logits(load_originals(sp.test.paths), cache=cache)
        dat, ms = dlib_costs_ms(load_originals(sp.test.paths[:1])[0])
        head_params = int(head.weight.size + head.bias.size)
        m = classification_metrics(sp.test.labels, np.argmax(test_logits, axis=1), self.data.num_classes)
        row = StageResult(stage="teacher", model=DLIB_HEAD, dtype="float32", params=dat // 4 + head_params, macs=0,
                          flash_bytes=dat + 4 * head_params, accuracy=m["accuracy"], macro_f1=m["macro_f1"],
                          host_latency_ms=ms, extra={"note": DLIB_HEAD_NOTE})
        return row, {"test_predictions": np.argmax(test_logits, 1).tolist(), "head": head.history,
                     "note": DLIB_HEAD_NOTE}

    def teacher_kd(self) -> dict:
        """How distilled stages get the teacher: a Keras model, or the dlib head's fixed logit table."""
        if self.recipe.teacher.name == DLIB_HEAD:
            with np.load(self.run.folder.path("teacher", "train_logits.npz")) as z:
                return {"teacher_logits": z["logits"]}
        return {"teacher": self.model("teacher")}

    def baseline(self, d: Path):
        m = self._student()
        h = self._train(m, "baseline")
        row = self._float_row("baseline", m, d)
        return row, {"history": h.to_dict(), "test_predictions": self.test_predictions}

    def distilled(self, d: Path):
        m = self._student()
        h = self._train(m, "distilled", teacher="teacher")
        row = self._float_row("distilled", m, d, kd=self._kd())
        return row, {"history": h.to_dict(), "test_predictions": self.test_predictions}

    def pruned_magnitude(self, d: Path):
        """Unstructured sparsity: a side branch that shows what it does and does not buy on an MCU."""
        r, mp = self.recipe, self.recipe.prune.magnitude
        m = keras.models.clone_model(self.model("distilled"))
        m.set_weights(self.model("distilled").get_weights())
        n_train = len(self.data.split.train.labels)
        total = max(1, mp.epochs * int(np.ceil(n_train / min(r.train.batch_size, n_train))))
        schedule = prune.PolynomialDecay(initial_sparsity=0.0, final_sparsity=mp.target_sparsity,
                                         begin_step=int(mp.begin_fraction * total),
                                         end_step=max(1, int(mp.end_fraction * total)), frequency=mp.frequency)
        pruner = prune.MagnitudePruner(m, schedule)
        # KD fine-tune at a lower learning rate; no best-epoch restore (the sparsity must reach its target)
        h = self._train(m, "pruned_magnitude", teacher="teacher", epochs=mp.epochs, seed_offset=3,
                        learning_rate=r.train.learning_rate * 0.3, callbacks=[prune.PruningCallback(pruner)],
                        restore_best=False)
        pruner.update(schedule.end_step)  # a short fine-tune may end before the schedule's last step
        pruner.apply()
        pruner.strip()
        sp = prune.sparsity_report(m)
        row = self._float_row("pruned_magnitude", m, d, sparsity=float(sp["overall"]), kd=self._kd())
        return row, {"history": h.to_dict(), "sparsity": sp, "test_predictions": self.test_predictions}

    def pruned_channel(self, d: Path):
        cp = self.recipe.prune.channel
        m, summary = prune.channel_prune(self.model("distilled"), cp.ratio, cp.criterion)
        h = self._train(m, "pruned_channel", teacher="teacher", epochs=cp.epochs, seed_offset=4)
        row = self._float_row("pruned_channel", m, d, kd=self._kd())
        return row, {"history": h.to_dict(), "summary": summary, "test_predictions": self.test_predictions}

    def int8(self, d: Path):
        r, src = self.recipe, self.final_float
        model, parent = self.model(src), self.row(src)
        train_x = to_float(self.data.split.train.images)
        rep = train_x[np.random.default_rng(r.seed).permutation(len(train_x))[: r.quantize.representative_samples]]
        x_test = to_float(self.data.split.test.images)
        q = quantize_and_check(model, rep, r.quantize, d, x_test)
        logits_q = q.runner.predict(x_test)
        float_logits = np.asarray(model.predict(x_test, batch_size=256, verbose=0))
        sample_q = q.runner.quantize_input(x_test[:1])
        save_self_test(d, sample_q, q.runner.predict_raw(sample_q))
        row = self._row("int8", model.name, "int8", q.blob, logits_q, params=parent.params,
                        arena_bytes=int(q.tflm.arena_bytes), kd=parent.kd)
        extra = {"source_stage": src, "float_accuracy": parent.accuracy, "int8_accuracy": row.accuracy,
                 "accuracy_drop_pp": round(100 * (parent.accuracy - row.accuracy), 3),
                 "top1_agreement": float(np.mean(np.argmax(logits_q, 1) == np.argmax(float_logits, 1))),
                 "tflm": q.tflm_facts(), "fits": q.fits(r.evaluate.targets),
                 "test_predictions": np.argmax(logits_q, 1).tolist()}
        return row, extra

    # ------------------------------------------------------------------------------------------ report
    def report(self, seconds: float) -> Report:
        r, out = self.recipe, self.run.outcomes
        n_test = len(self.data.split.test.labels)
        notes = (*NOTES, f"The test split has {n_test} images: one image is {100 / n_test:.2f} pp of accuracy, so "
                 "differences of a few images between stages are within sampling noise.")
        return Report(
            task=self.task, recipe_name=r.name, stages=tuple(out[s].result for s in STAGES if s in out),
            recipe=r.to_dict(), dataset=self.data.info, targets=tuple(r.evaluate.targets), notes=notes,
            timings_s={k: round(v.seconds, 2) for k, v in out.items()},
            history={s: out[s].extra["history"] for s in STAGES if s in out and "history" in out[s].extra},
            sections=self._sections(), atalaia_version=__version__, created=now_utc())

    def _intervals(self) -> dict:
        """95% intervals over the test images: each stage's accuracy (Wilson) and macro-F1 (bootstrap), and each
        "stage - parent" difference paired on the same images (paired bootstrap + exact McNemar)."""
        y, k, out = self.data.split.test.labels, self.data.num_classes, self.run.outcomes
        preds = {s: np.asarray(o.extra["test_predictions"]) for s, o in out.items() if "test_predictions" in o.extra}
        stages = {s: {"accuracy": accuracy_interval(y, p).to_dict(),
                      "macro_f1": bootstrap_macro_f1(y, p, k, seed=self.recipe.seed).to_dict()} for s, p in preds.items()}
        parents = [("distilled", "baseline"), ("distilled", "teacher"), ("pruned_magnitude", "distilled"),
                   ("pruned_channel", "distilled"), ("int8", self.final_float)]
        deltas = {f"{b} - {a}": {"accuracy": paired_bootstrap(y, preds[a], preds[b], metric="accuracy",
                                                               seed=self.recipe.seed).to_dict(),
                                 "macro_f1": paired_bootstrap(y, preds[a], preds[b], metric="macro_f1", num_classes=k,
                                                              seed=self.recipe.seed).to_dict()}
                  for b, a in parents if a in preds and b in preds}
        return {"n_test": int(len(y)), "level": 0.95, "stages": stages, "deltas": deltas,
                "methods": {"accuracy": "Wilson score interval", "macro_f1": "bootstrap over test images (2000, "
                            "percentile)", "deltas": "paired bootstrap over the same test images; McNemar exact "
                            "p-value; 'not significant' when the interval contains 0"}}

    def _sections(self) -> dict:
        r, out = self.recipe, self.run.outcomes
        b, dst = self.row("baseline"), self.row("distilled")
        sec: dict = {"kd": {"convention": "loss = alpha*CE + (1-alpha)*T^2*KL(p_t^T || p_s^T)", **self._kd(),
                            "gain_accuracy": dst.accuracy - b.accuracy, "gain_macro_f1": dst.macro_f1 - b.macro_f1}}
        if "pruned_magnitude" in out:
            pm = self.row("pruned_magnitude")
            sec["magnitude_pruning"] = {
                "target_sparsity": r.prune.magnitude.target_sparsity, "achieved_sparsity": pm.sparsity,
                "flash_bytes": pm.flash_bytes, "gzip_bytes": pm.gzip_bytes, "dense_flash_bytes": dst.flash_bytes,
                "dense_gzip_bytes": dst.gzip_bytes, "note": NOTES[1]}
        if "pruned_channel" in out:
            pc = self.row("pruned_channel")
            sec["channel_pruning"] = {
                "ratio": r.prune.channel.ratio, "criterion": r.prune.channel.criterion, "params_before": dst.params,
                "params_after": pc.params, "macs_before": dst.macs, "macs_after": pc.macs,
                "flash_before": dst.flash_bytes, "flash_after": pc.flash_bytes,
                "layers": out["pruned_channel"].extra.get("summary", {}).get("layers", [])}
        sec["intervals"] = self._intervals()
        sec["kd"]["gain_interval"] = sec["intervals"]["deltas"].get("distilled - baseline")
        ex = out["int8"].extra
        sec["int8"] = {k: ex[k] for k in ("source_stage", "float_accuracy", "int8_accuracy", "accuracy_drop_pp",
                                          "top1_agreement", "tflm", "fits")}
        m = classification_metrics(self.data.split.test.labels, np.asarray(ex["test_predictions"]),
                                   self.data.num_classes)
        sec["final"] = {"stage": "int8", "confusion_matrix": m["confusion_matrix"].tolist(),
                        "class_names": self.data.info["class_names"],
                        "per_class": {k: v.tolist() for k, v in m["per_class"].items()}}
        return sec


__all__ = ["ClassificationPlan", "ClosedSetData", "NOTES", "STAGES", "load_closed_set", "teacher_consumes", "teacher_stage_key"]
