"""The public Python API beside the CLI: `run` a recipe, or use one stage verb on your own model.

    import atalaia
    report = atalaia.run(out_dir="runs/quick", **{"train.epochs": 5})      # the bundled default recipe
    model, summary = atalaia.prune(model, method="channel", ratio=0.5)
    blob = atalaia.quantize(model, representative=x_train[:128])
    tflm = atalaia.verify_tflm(blob)                                       # ops, measured arena, parity
    row = atalaia.evaluate(blob, images=x_test_uint8, labels=y_test)

Every verb takes keyword-only arguments after its subject, and raises `AtalaiaError` with a one-line reason.
This module imports TensorFlow; `import atalaia` does not (it loads this module on first use of a verb).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from atalaia.compress import prune as P
from atalaia.compress.distill import train_classifier
from atalaia.config import AugmentConfig, EvaluateConfig, Recipe, TrainConfig, load_recipe
from atalaia.data.dataset import to_float
from atalaia.deploy.cortex_m import CPUS
from atalaia.deploy.firmware import FrameBundle
from atalaia.deploy.mcu import RunModel, export_model, firmware_for_run, tflm_root_from
from atalaia.deploy.targets import get_part, get_target
from atalaia.deploy.tflite import TFLiteRunner, convert_int8
from atalaia.deploy.tflm import check_tflm
from atalaia.errors import AtalaiaError
from atalaia.evaluate.metrics import classification_metrics
from atalaia.evaluate.result import StageResult
from atalaia.pipeline import run_recipe
from atalaia.pipeline.runfolder import RunFolder
from atalaia.pipeline.stages import profiled_row
from atalaia.preflight import preflight
from atalaia.report.schema import Report
from atalaia.tune import tuned_recipe


def run(recipe: str | Path | None = None, out_dir: str | Path | None = None, *, force: bool = False,
        **overrides: Any) -> Report:
    """Run a recipe end to end (None = the bundled default) into `out_dir` (default `runs/<name>`).

    `overrides` are dotted recipe keys: `run(None, "runs/x", **{"train.epochs": 5})`. A recipe with
    `distill.tune: true` takes alpha/T from the study in `<out_dir>/tune` (made by `atalaia tune`)."""

    r = load_recipe(recipe, overrides)
    out = Path(out_dir) if out_dir is not None else Path("runs") / r.name
    preflight(r, out, "out_dir")  # targets, output folder, data listing and headers: before any training
    if r.distill.tune:
        r = tuned_recipe(r, out)
    return run_recipe(r, out, force=force)


def distill(student: Any, *, teacher: Any, split: Any, alpha: float = 0.1, temperature: float = 5.0,
            epochs: int = 40, train: TrainConfig | None = None, augment: AugmentConfig | None = None,
            seed: int = 42) -> Any:
    """Train `student` in place with Hinton KD from `teacher` on `split` (`atalaia.data.dataset.Split`).
    loss = alpha * CE(labels) + (1 - alpha) * T^2 * KL(teacher^T || student^T). Returns the TrainHistory."""

    return train_classifier(student, split, train or TrainConfig(), augment=augment or AugmentConfig(),
                            teacher=teacher, alpha=alpha, temperature=temperature, epochs=epochs, seed=seed)


def prune(model: Any, *, method: str = "channel", ratio: float = 0.5, criterion: str = "l1") -> tuple[Any, dict]:
    """Structured channel pruning (a narrower, really smaller network) or one-shot magnitude pruning (zeros
    only: TFLM has no sparse kernels, so flash, RAM and time stay the same). Returns (model, summary)."""

    if method == "channel":
        return P.channel_prune(model, ratio, criterion)
    if method == "magnitude":
        pruner = P.MagnitudePruner(model, P.PolynomialDecay(initial_sparsity=ratio, final_sparsity=ratio,
                                                             begin_step=0, end_step=1, frequency=1))
        pruner.update(1)
        pruner.apply()
        pruner.strip()
        return model, P.sparsity_report(model)
    raise AtalaiaError(f"prune: method must be 'channel' or 'magnitude', got '{method}'")


def quantize(model: Any, *, representative: np.ndarray, per_channel: bool = True, strip: bool = True) -> bytes:
    """Full-integer (int8 in/out) post-training quantization -> the `.tflite` bytes as flashed."""

    return convert_int8(model, representative, per_channel=per_channel, strip=strip)


def verify_tflm(blob: bytes, *, inputs_q: np.ndarray | None = None) -> Any:
    """Load the int8 model in the TFLM runtime: ops supported, arena measured, outputs compared with LiteRT."""

    return check_tflm(blob, inputs_q)


def evaluate(blob: bytes, *, images: np.ndarray, labels: np.ndarray, targets: tuple[str, ...] = ("esp32", "esp32s3"),
             latency_runs: int = 20) -> StageResult:
    """A `.tflite` on uint8 test images: accuracy, macro-F1, MACs, flash, host and est. MCU latency."""

    labels = np.asarray(labels)
    pred = np.argmax(TFLiteRunner(blob).predict(to_float(images)), axis=1)
    m = classification_metrics(labels, pred, int(max(labels.max(), pred.max()) + 1))
    r = Recipe(evaluate=EvaluateConfig(latency_runs=latency_runs, targets=tuple(targets)))
    return profiled_row(r, blob, stage="evaluate", model="tflite", dtype="int8" if _is_int8(blob) else "float32",
                        params=0, accuracy=m["accuracy"], macro_f1=m["macro_f1"])


def _is_int8(blob: bytes) -> bool:

    return TFLiteRunner(blob).input_dtype == np.int8


def load_frame_bundle(detector_run: str | Path) -> FrameBundle:
    """The int8 detector of a finished detection run, to bundle with a face model (`export --detector`): model,
    measured TFLM arena, decode constants, and two test frames for the firmware's frame demo (the run's stored
    self-test frame, enrolled, and its mirror image)."""
    from atalaia.face.access import load_detector

    det = load_detector(detector_run)
    run = RunFolder(detector_run)
    with np.load(run.path("int8", "self_test.npz")) as test:
        xq = np.asarray(test["input_q"]).reshape(det.input_hw)
    grey = np.clip(np.round((xq.astype(np.float64) - det.input_zero_point) * det.input_scale * 255.0), 0, 255)
    frame = grey.astype(np.uint8)
    return FrameBundle(blob=det.blob, arena_bytes=int(run.metrics("int8")["result"]["arena_bytes"]),
                       facts=det.facts(), frames=(frame, np.ascontiguousarray(frame[:, ::-1])), enrol=(0,))


def load_run_model(run_dir: str | Path, *, detector: str | Path | None = None) -> RunModel:
    """What a firmware needs from a finished run: its int8 stage (`int8`, or `int8_litert` for a face run) read
    through `RunFolder`, so every file is checked against its stage's checksums first. `detector`: a detection
    run to bundle with a face run (frame -> decision on the device, one shared arena)."""
    run = RunFolder(run_dir)
    stage = run.first_finished("int8", "int8_litert")
    if stage is None:
        raise AtalaiaError(f"no finished int8 stage in '{run_dir}' (int8: {run.problem('int8')}; int8_litert: "
                           f"{run.problem('int8_litert')}): run `atalaia run` first")
    with np.load(run.path(stage, "self_test.npz")) as test:
        stored = np.asarray(test["input_q"])
    face = json.loads(run.path(stage, "face_model.json").read_text()) if run.has(stage, "face_model.json") else None
    if detector is not None and face is None:
        raise AtalaiaError(f"--detector bundles a face detector with a face (verification) run; '{run_dir}' has no "
                           f"face model ({stage}/face_model.json): pass a run of recipes/lfw.yaml")
    return RunModel(blob=run.path(stage, "model.tflite").read_bytes(),
                    arena_bytes=int(run.metrics(stage)["result"]["arena_bytes"]), stored_input_q=stored,
                    face_facts=face, stage=stage,
                    frame=load_frame_bundle(detector) if detector is not None else None)


def export(run_dir: str | Path, *, out: str | Path | None = None, target: str = "esp32s3", name: str = "g_model",
           tflm_root: str | Path | None = None, detector: str | Path | None = None) -> list[Path]:
    """The run's verified int8 model as a C array (+ face_model.h for face runs) and a firmware project: ESP-IDF
    for an ESP32 chip, bare-metal Makefile for a Cortex-M core (`tflm_root`: a TFLM tree). `detector` (a face
    run only): bundle a detection run's detector, so the firmware runs frame -> decision with one tensor arena
    for both models. Written into a temp folder and renamed into place: never half-written."""
    if target in CPUS:
        tflm_root_from(tflm_root)  # a missing or wrong TFLM tree is said before the run is read
    else:
        get_target(target)  # an ESP-IDF chip: the error lists the valid names
    return export_model(load_run_model(run_dir, detector=detector), Path(out) if out is not None else Path(run_dir) / "export",
                        target=target, tflm_root=tflm_root, name=name)


def firmware(run_dir: str | Path, *, target: str = "cortex-m4", emulate: bool = True, part: str | None = None,
             kernels: str = "cmsis_nn", cache_dir: str | Path | None = None,
             tflm_root: str | Path | None = None, detector: str | Path | None = None) -> tuple[dict[str, Any], Path]:
    """Build the run's int8 model for a Cortex-M core (only the kernels it uses), optionally run it in QEMU, and
    write RUN/firmware/<target>/firmware.json: linked sizes, bit-exact, instructions, est. latency. `detector`:
    bundle a detection run's detector (face runs): the emulated firmware also runs frame -> decision with both
    models in one arena, compared with the host."""
    return firmware_for_run(load_run_model(run_dir, detector=detector), run_dir, target=target, tflm_root=tflm_root, emulate=emulate,
                            part=get_part(part) if part else None, kernels=kernels, cache_dir=cache_dir)


__all__ = ["distill", "evaluate", "export", "firmware", "load_frame_bundle", "load_run_model", "prune", "quantize", "run", "verify_tflm"]
