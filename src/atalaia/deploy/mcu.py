"""`atalaia export` and `atalaia firmware` for a run folder: project writing, build, emulation, firmware.json.

Self-test inputs: run folders keep one self-test input, so the firmware's N inputs are derived from it
(`selftest.derive_inputs`) and their expected outputs computed here with the `tflite_micro` runtime.
For a face model the access-control demo enrols two chips (the stored one as person 0, a full-range input as
person 1) and decides on every self-test input; the host makes the same decisions from the TFLM runtime's
outputs with `mirror_fuse` / `open_set_threshold` / the 1-NN rule of `atalaia access`, and `firmware.json`
says whether every decision matched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atalaia.deploy.carray import detector_header, write_c_array, write_face_header
from atalaia.deploy.cortex_m import CPUS, get_cpu, validate_tflm_root, write_cortex_m_project
from atalaia.deploy.emulate import build_firmware, elf_sizes, parse_firmware_output, run_qemu
from atalaia.deploy.firmware import FaceTest, FrameBundle, arena_with_margin, write_esp_idf_project
from atalaia.deploy.selftest import derive_inputs, tflm_outputs
from atalaia.deploy.targets import (
    TARGETS,
    cycles_per_instruction,
    estimate_latency_ms,
    estimate_ms_from_instructions,
    get_target,
    instruction_calibration,
)
from atalaia.deploy.tflite import op_names
from atalaia.errors import DeployError
from atalaia.evaluate.profile import count_macs
from atalaia.evaluate.verification import mirror_fuse, open_set_threshold
from atalaia.ioutil import atomic_write_json, atomic_write_text

__all__ = ["RunModel", "export_model", "firmware_for_model", "firmware_for_run", "host_face_decisions",
           "host_frame_decisions", "tflm_root_from"]

N_SELF_TESTS = 8


@dataclass(frozen=True)
class RunModel:
    """What a firmware needs from a run: the model as flashed, its measured arena, one stored self-test input."""

    blob: bytes
    arena_bytes: int
    stored_input_q: np.ndarray
    face_facts: dict | None
    stage: str
    frame: FrameBundle | None = None  # a bundled detector: frame -> decision, one shared arena


def tflm_root_from(option: str | Path | None) -> Path:
    """--tflm-root, else $ATALAIA_TFLM_ROOT; validated."""
    return validate_tflm_root(option if option is not None else os.environ.get("ATALAIA_TFLM_ROOT"))


# --------------------------------------------------------------------------------------------- self-test data
def _face_test(x: np.ndarray) -> FaceTest:
    # person 0 = the stored chip, person 1 = the full-range input (derive_inputs puts it after the shifts)
    other = 4 if len(x) > 4 else len(x) - 1
    return FaceTest(enrol_inputs_q=x[[0, other]], enrol_person=np.array([0, 1], np.int16), probe_inputs_q=x)


def host_face_decisions(blob: bytes, facts: dict, test: FaceTest, open_far: float = 0.01) -> list[dict]:
    """The decisions `atalaia access` makes for `test` (enrol, then 1-NN with the gallery-size open-set
    threshold), from the TFLM runtime's int8 outputs: what the firmware's decisions must equal."""
    embed = _tflm_embedder(blob, facts)
    gallery = embed(test.enrol_inputs_q)
    probes = embed(test.probe_inputs_q)
    th = _open_set(facts, len(gallery), open_far)
    out = []
    for i, s in enumerate(probes @ gallery.T):
        j = int(np.argmax(s))
        out.append({"probe": i, "person": int(test.enrol_person[j]), "score": float(s[j]), "threshold": float(th),
                    "granted": bool(s[j] >= th), "margin_to_second": float(np.sort(s)[-1] - np.sort(s)[-2])
                    if len(s) > 1 else None})
    return out


def _open_set(facts: dict, templates: int, open_far: float) -> float:
    tail = facts.get("impostor_tail") or {"thresholds": {"0.001": facts["threshold_far_1e-3"],
                                                         "0.01": facts["threshold_far_1e-2"]}}
    return float(open_set_threshold(tail, max(1, templates), open_far)[0])


def host_frame_decisions(blob: bytes, facts: dict, frame: FrameBundle, open_far: float = 0.01) -> list[dict]:
    """What `atalaia_face_frame.c` must print for the bundle's test frames: both models in the TFLM runtime, the
    frame path of `face.frame` (letterbox, decode, largest face, one-warp chip), the enrol frames as persons 0..,
    then 1-NN with the gallery-size open-set threshold."""
    from atalaia.face.frame import FrameDetector

    f = frame.facts
    det = FrameDetector(frame.blob, output_scale=f["output_scale"], output_zero_point=f["output_zero_point"],
                        score_threshold=f["score_threshold"], nms_iou=f["nms_iou"],
                        max_detections=f["max_detections"], runtime="tflm")
    size, crop = int(facts["input_size"]), float(facts["crop"])
    embed = _tflm_embedder(blob, facts)
    faces, embs = [], []
    for img in frame.frames:
        ff = det.face(np.asarray(img, np.uint8), size, crop)
        faces.append(ff)
        if ff is not None:
            x = np.asarray(ff.chip, np.float32)[None, ..., None] / np.float32(255.0)
            xq = np.clip(np.round(x / np.float32(facts["input_scale"])) + int(facts["input_zero_point"]), -128, 127)
            embs.append(embed(xq.astype(np.int8))[0])
        else:
            embs.append(None)
    gal = [(k, embs[i]) for k, i in enumerate(frame.enrol) if embs[i] is not None]
    th = _open_set(facts, len(gal), open_far)
    out = []
    for i, (ff, e) in enumerate(zip(faces, embs, strict=True)):
        if ff is None:
            out.append({"frame": i, "status": 1, "faces": 0})
            continue
        sims = [float(g @ e) for _, g in gal]
        j = int(np.argmax(sims)) if sims else -1
        score = sims[j] if sims else float("nan")
        out.append({"frame": i, "status": 0, "faces": ff.faces, "box": list(ff.box), "person": gal[j][0] if sims else -1,
                    "score": score, "threshold": th, "granted": bool(sims) and score >= th,
                    "margin_to_second": float(np.sort(sims)[-1] - np.sort(sims)[-2]) if len(sims) > 1 else None})
    return out


def _same_frame_decision(dev: dict, host: dict, tol: float = 2e-3) -> bool:
    """Same status and face count; box within 1e-3 px (printed in millipixels); same decision (see _same_decision),
    with a score tolerance `tol` wider than for chips: the C chip equals the Python one within one grey level,
    not bit for bit, so the embedding may move slightly."""
    if dev["status"] != host["status"] or dev["faces"] != host["faces"]:
        return False
    if host["status"] != 0:
        return True
    if max(abs(a - b) for a, b in zip(dev["box"], host["box"], strict=True)) > 1.5e-3:
        return False
    return _same_decision(dev, host, tol)


def _tflm_embedder(blob: bytes, facts: dict):
    """int8 recogniser inputs (N, ...) -> unit embeddings from the TFLM runtime (mirror TTA as the device)."""
    def embed(x: np.ndarray) -> np.ndarray:
        deq = (tflm_outputs(blob, x).reshape(len(x), -1).astype(np.float64) - facts["output_zero_point"]) \
            * facts["output_scale"]
        if facts.get("mirror_tta"):
            xm = x[:, :, ::-1] if x.ndim >= 3 else x
            deqm = (tflm_outputs(blob, np.ascontiguousarray(xm)).reshape(len(x), -1).astype(np.float64)
                    - facts["output_zero_point"]) * facts["output_scale"]
            return np.asarray(mirror_fuse(deq, deqm), dtype=np.float64)
        return deq / np.linalg.norm(deq, axis=1, keepdims=True)

    return embed


# --------------------------------------------------------------------------------------------- export
def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished `tmp` folder to `out`, replacing an old `out` (never a half-written `out`)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_project(model: RunModel, project: Path, target: str, root: Path | None, n_tests: int) -> list[Path]:
    x = derive_inputs(model.stored_input_q, n_tests)
    y = tflm_outputs(model.blob, x)
    face_test = _face_test(x) if model.face_facts else None
    ops = op_names(model.blob)
    if target in CPUS:
        return write_cortex_m_project(model.blob, project, cpu=target, tflm_root=root, ops=ops,
                                      arena_bytes=model.arena_bytes, test_inputs_q=x, test_outputs_q=y,
                                      face_facts=model.face_facts, face_test=face_test, frame=model.frame)
    return write_esp_idf_project(model.blob, project, ops=ops, arena_bytes=model.arena_bytes, sample_input_q=x,
                                 expected_output_q=y, target=target, face_facts=model.face_facts,
                                 face_test=face_test, frame=model.frame)


def export_model(model: RunModel, out_dir: str | Path, *, target: str, tflm_root: str | Path | None = None,
                 name: str = "g_model", n_tests: int = N_SELF_TESTS) -> list[Path]:
    """C array (+ face_model.h) and a firmware project for `target` (an ESP32 chip -> ESP-IDF project,
    a Cortex-M core -> bare-metal project) under `out_dir`, written into a temporary folder and renamed into
    place. Returns the final paths."""
    if target not in CPUS:
        get_target(target)  # an ESP-IDF chip: RecipeError listing the valid ones
    root = tflm_root_from(tflm_root) if target in CPUS else None
    out = Path(out_dir).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write_c_array(model.blob, tmp, name)
        if model.face_facts:
            write_face_header(model.face_facts, tmp)
        if model.frame is not None:
            write_c_array(model.frame.blob, tmp, "g_detector", stem="detector_data")
            atomic_write_text(tmp / "detector_model.h", detector_header(model.frame.facts))
        sub = f"cortex-m-{target.removeprefix('cortex-')}" if target in CPUS else f"esp-idf-{target}"
        _write_project(model, tmp / sub, target, root, n_tests)
        if out.exists():  # keep the other targets' projects already exported there
            for p in out.iterdir():
                if not (tmp / p.name).exists():
                    os.replace(p, tmp / p.name)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(p for p in out.rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------------- firmware
def firmware_for_model(
    blob: bytes,
    *,
    stored_input_q: np.ndarray,
    arena_bytes: int,
    target: str,
    tflm_root: str | Path | None,
    work_dir: str | Path,
    emulate: bool = True,
    part: Any = None,
    kernels: str = "cmsis_nn",
    cache_dir: str | Path | None = None,
    face_facts: dict | None = None,
    n_tests: int = N_SELF_TESTS,
    frame: FrameBundle | None = None,
) -> dict[str, Any]:
    """Write the project into `work_dir`, build it (only the needed kernels, cached), optionally run it in
    QEMU, and return the firmware record (sizes, bit-exactness, instructions, estimates)."""
    cpu = get_cpu(target)
    if part is not None and part.cpu != cpu.name:
        raise DeployError(f"part {part.name} has a {part.cpu}; build it with --target {part.cpu}")
    root = tflm_root_from(tflm_root)
    model = RunModel(blob=bytes(blob), arena_bytes=int(arena_bytes), stored_input_q=np.asarray(stored_input_q),
                     face_facts=face_facts, stage="", frame=frame)
    need = max(model.arena_bytes, frame.arena_bytes) if frame is not None else model.arena_bytes
    project = Path(work_dir)
    if project.exists():
        shutil.rmtree(project)
    _write_project(model, project, cpu.name, root, n_tests)
    build = build_firmware(project, tflm_root=root, cpu=cpu.name, kernels=kernels, cache_dir=cache_dir, part=part)
    macs = count_macs(model.blob)
    rec: dict[str, Any] = {
        "target": cpu.name,
        "kernels": kernels,
        "part": part.to_dict() if part is not None else None,
        "fits_part": True if part is not None else None,
        "model": {"tflite_bytes": len(model.blob), "sha256": hashlib.sha256(model.blob).hexdigest(),
                  "ops": sorted(set(op_names(model.blob))), "macs": int(macs["total"])},
        "arena": {"host_measured_bytes": model.arena_bytes, "linked_bytes": arena_with_margin(need)},
        "sizes": elf_sizes(build.elf, build.map_file),
        "build": {"seconds": round(build.seconds, 1), "tflm_lib_seconds": round(build.lib_seconds, 1),
                  "lib_dir": str(build.lib_dir), "toolchain": "arm-none-eabi-gcc -O2, newlib-nano"},
        "self_test": {"n": n_tests, "inputs": "the run's stored input + mirror, shifts, full-range and noisy "
                      "variants (deterministic)", "expected": "tflite_micro Python runtime (TFLM reference kernels)"},
        "emulated": False,
        "notes": [],
    }
    mac_ms = None
    if cpu.name in TARGETS:  # the MAC-rate model of the anchor board, scaled to the part's clock
        prof = TARGETS[cpu.name]
        mac_ms = estimate_latency_ms(macs["by_op"], len(op_names(model.blob)), cpu.name) * prof.clock_mhz \
            / (part.clock_mhz if part is not None else prof.clock_mhz)
    rec["latency_est"] = {"from_macs_ms": None if mac_ms is None else round(mac_ms, 3),
                          "from_macs_basis": None if mac_ms is None else
                          f"MAC-rate model of target profile {cpu.name} ({TARGETS[cpu.name].description})"}
    if not emulate:
        return rec
    run = run_qemu(build.elf, cpu=cpu.name, plugin_source=project / "port" / "qemu_insncount.c",
                   cache_dir=cache_dir)
    out = parse_firmware_output(run.stdout)
    if out["error"] and "allocate_failed" in out["error"]:
        # CMSIS-NN kernels can ask for scratch buffers the reference kernels (host measurement) do not: grow the
        # arena once, read what the target really used, and link again with that + the margin
        big = build_firmware(project, tflm_root=root, cpu=cpu.name, kernels=kernels, cache_dir=cache_dir,
                             arena_bytes=arena_with_margin(2 * need + 65536))
        big_out = parse_firmware_output(run_qemu(big.elf, cpu=cpu.name, plugin_source=project / "port" /
                                                 "qemu_insncount.c", cache_dir=cache_dir).stdout)
        fa = big_out["frame_arena"] or {}
        used = max(big_out["arena_used_bytes"] or 0, fa.get("detector_used_bytes", 0),
                   fa.get("recogniser_used_bytes", 0))
        if not used:
            raise DeployError(f"the firmware could not allocate its tensors even with a larger arena:\n{run.stdout}")
        build = build_firmware(project, tflm_root=root, cpu=cpu.name, kernels=kernels, cache_dir=cache_dir,
                               part=part, arena_bytes=arena_with_margin(used))
        rec["sizes"] = elf_sizes(build.elf, build.map_file)
        rec["arena"]["linked_bytes"] = arena_with_margin(used)
        rec["notes"].append(f"the host-measured arena was too small for {kernels} kernels on the target; "
                            f"relinked with the target's arena_used ({used} B) + margin")
        run = run_qemu(build.elf, cpu=cpu.name, plugin_source=project / "port" / "qemu_insncount.c",
                       cache_dir=cache_dir)
        out = parse_firmware_output(run.stdout)
    if out["error"] or out["result"] is None:
        raise DeployError(f"the firmware failed in QEMU {run.machine}: {out['error'] or 'no result line'}\n"
                          f"{run.stdout[-2000:]}")
    n_inv = len(out["samples"])
    per_invoke = run.instructions[:n_inv]
    insns = int(np.median(per_invoke)) if per_invoke else None
    rec["emulated"] = True
    rec["qemu"] = {"machine": run.machine, "seconds": round(run.seconds, 2), "version": _qemu_version()}
    rec["arena"]["used_on_target_bytes"] = out["arena_used_bytes"]
    rec["self_test"].update({"bit_exact": out["bit_exact_samples"] == n_inv and n_inv == n_tests,
                             "bit_exact_samples": out["bit_exact_samples"], "samples": n_inv,
                             "max_diff_steps": out["max_diff_steps"]})
    rec["instructions"] = {"per_invoke": insns, "min": min(per_invoke) if per_invoke else None,
                           "max": max(per_invoke) if per_invoke else None, "invokes_counted": len(per_invoke),
                           "counted_by": "QEMU TCG plugin between bench_marker_start/stop (emulated)"}
    cpi = cycles_per_instruction(cpu.name) if cpu.name in TARGETS else None
    clock = part.clock_mhz if part is not None else (TARGETS[cpu.name].clock_mhz if cpu.name in TARGETS else None)
    ins_ms = estimate_ms_from_instructions(insns, cpu.name, clock) if (cpi and insns) else None
    cal = [c for c in instruction_calibration() if c["target"] == cpu.name]
    rec["latency_est"].update({
        "from_instructions_ms": None if ins_ms is None else round(ins_ms, 3),
        "cpi": None if cpi is None else round(cpi, 4),
        "clock_mhz": clock,
        "loo_rel_error_instructions": [c["loo_rel_error"] for c in cal],
        "loo_rel_error_macs": [c["mac_rate_loo_rel_error"] for c in cal],
        "anchors": [c["model"] for c in cal],
    })
    if cpi is None:
        rec["notes"].append(f"no published TFLM timing anchors for {cpu.name}: no latency estimate from instructions")
    if face_facts:
        x = derive_inputs(model.stored_input_q, n_tests)
        host = host_face_decisions(model.blob, face_facts, _face_test(x))
        dev = out["face_probes"]
        same = len(dev) == len(host) and all(_same_decision(d, h) for d, h in zip(dev, host, strict=False))
        rec["face"] = {"mirror_tta": bool(face_facts.get("mirror_tta")), "enrolled": 2, "probes": len(dev),
                       "decisions_equal_host": same, "device": dev, "host": host}
    if frame is not None and face_facts:
        host_f = host_frame_decisions(model.blob, face_facts, frame)
        dev_f = out["frame_probes"]
        same_f = len(dev_f) == len(host_f) and all(_same_frame_decision(d, h) for d, h in zip(dev_f, host_f,
                                                                                              strict=False))
        rec["frame"] = {"detector": {"tflite_bytes": len(frame.blob), "host_measured_arena_bytes": frame.arena_bytes,
                                     "macs": int(count_macs(frame.blob)["total"])},
                        "arena": out["frame_arena"], "frames": len(dev_f), "enrolled": len(frame.enrol),
                        "decisions_equal_host": same_f, "device": dev_f, "host": host_f,
                        "note": "both models re-created in turn in the one linked arena (measured in the emulator)"}
    return rec


def _same_decision(dev: dict, host: dict, tol: float = 1e-4) -> bool:
    """Device and host agree: same score (float32 on the MCU vs float64 here, printed in millionths), and the same
    person and verdict wherever they are not decided by a float tie (score within `tol` of the threshold, or two
    persons within `tol` of each other)."""
    if abs(dev["score"] - host["score"]) > tol:
        return False
    if (host["margin_to_second"] is None or host["margin_to_second"] > tol) and dev["person"] != host["person"]:
        return False
    return abs(host["score"] - host["threshold"]) <= tol or dev["granted"] == host["granted"]


def _qemu_version() -> str:
    try:
        return subprocess.run(["qemu-system-arm", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    except OSError:  # pragma: no cover
        return "?"


def firmware_for_run(model: RunModel, run_dir: str | Path, *, target: str, tflm_root: str | Path | None = None,
                     emulate: bool = True, part: Any = None, kernels: str = "cmsis_nn",
                     cache_dir: str | Path | None = None, n_tests: int = N_SELF_TESTS) -> tuple[dict[str, Any], Path]:
    """Build (and emulate) the run's int8 model for `target`; writes RUN/firmware/<target>/firmware.json
    (atomic) beside the project; returns (record, json path). `model` is the run's verified int8 stage
    (`atalaia.api.load_run_model`: the run folder is read there, checksums checked)."""
    fw_dir = Path(run_dir) / "firmware" / target
    rec = firmware_for_model(model.blob, stored_input_q=model.stored_input_q, arena_bytes=model.arena_bytes,
                             target=target, tflm_root=tflm_root, work_dir=fw_dir / "project", emulate=emulate,
                             part=part, kernels=kernels, cache_dir=cache_dir, face_facts=model.face_facts,
                             n_tests=n_tests, frame=model.frame)
    rec["run"] = {"dir": str(Path(run_dir).resolve()), "stage": model.stage}
    path = atomic_write_json(fw_dir / "firmware.json", rec)
    return rec, path


