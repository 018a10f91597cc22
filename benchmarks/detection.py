"""Face detection benchmark (issue 13): a finished `task: detection` run -> benchmarks/results/detection.json.

Usage:
    python benchmarks/detection.py --run-dir runs/detection [--face-run runs/lfw] [--frames DIR]
                                   [--celeba-ids FILE] [--out benchmarks/results/detection.json] [--no-teacher]

Reports, from the run: AP@0.5, AP@0.5:0.95, recall by face size, landmark NME, false positives per empty frame,
params, MACs, flash, TFLM arena, est. latency per target, for the float and int8 detectors. All against dlib
PSEUDO-LABELS (they miss small and profile faces).

Then the alignment cost to the recogniser, twice. With the int8 student of a finished face run (`--face-run`,
default runs/lfw; LiteRT): every test frame goes through the access-check frame path (`face.frame`), and each
labelled face it finds is embedded from three chips at the student's input: one-warp from dlib's 5 points, one-warp
from the detector's points, and the training pipeline's dlib chip; cosines, and pairs accuracy at the student's
LFW-chosen threshold (not tuned on these pairs) and AUC (`alignment_cost_student`). And with dlib's ResNet (the
teacher the students are distilled from), on 150x150 grey chips (`alignment_cost`; `--no-teacher` skips it):
for every labelled test face the int8 detector finds (IoU >= 0.5 at the operating threshold), a chip aligned
from dlib's 5 points (the labels) and one from the detector's 5 points, both with the device's one-warp
bilinear alignment (`face.align5`), are embedded; we report their cosine, and verification on pairs of test
frames (identities from the CelebA identity file of `celeba_subset_299ids`: same-person pairs of test frames,
as many different-person pairs drawn with a fixed seed) at dlib's fixed threshold 0.6 (Euclidean) and as ROC
AUC, with each alignment. The chip from dlib's own `get_face_chip` (label points) is also embedded, to show
what the one-warp resampling alone costs.

Frame to decision: detector MACs + the recogniser's (the face run's int8 student, mirror TTA: two inferences per
face; its `int8_litert` stage row), est. latency per target (sum of the two estimates), and the sequential peak RAM with the ONE arena the
exported firmware links (the larger measured arena + margin; both models checked to load and invoke in exactly
that many bytes in TFLM) + one grey camera frame + the gallery. Without a finished face run: from lfw.json.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from atalaia.data.frames import load_frames
from atalaia.evaluate.detection import LABEL_NOTE, iou
from atalaia.face.align5 import align_chip
from atalaia.ioutil import atomic_write_json
from atalaia.pipeline.runfolder import RunFolder

HERE = Path(__file__).resolve().parent
SHARED = Path("/work/shared/datasets")


def _stage_file(run_dir: Path, stage: str, name: str) -> Path:
    """The one place this script reads a run folder (checksums verified by RunFolder)."""
    return RunFolder(run_dir).path(stage, name)


def _detections(run_dir: Path, n_frames: int):
    with np.load(_stage_file(run_dir, "int8", "detections.npz")) as z:
        counts, boxes, scores, lms = z["counts"], z["boxes"], z["scores"], z["landmarks"]
    if len(counts) != n_frames:
        raise SystemExit(f"the run's int8 detections cover {len(counts)} frames, this test split has {n_frames}: "
                         "pass the --frames folder the run used")
    starts = np.concatenate([[0], np.cumsum(counts)])
    return [(boxes[a:b], scores[a:b], lms[a:b]) for a, b in zip(starts[:-1], starts[1:], strict=True)]


def _pairs(ids: list[int], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    same = [(i, j) for i, j in itertools.combinations(range(len(ids)), 2) if ids[i] == ids[j]]
    rng = np.random.default_rng(seed)
    diff: set[tuple[int, int]] = set()
    while len(diff) < len(same) and len(ids) > 1:
        i, j = sorted(rng.choice(len(ids), 2, replace=False).tolist())
        if ids[i] != ids[j]:
            diff.add((i, j))
    p = same + sorted(diff)
    return (np.array([a for a, _ in p]), np.array([b for _, b in p]),
            np.array([1] * len(same) + [0] * len(diff)))


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    return float(np.mean(pos[:, None] > neg[None, :]) + 0.5 * np.mean(pos[:, None] == neg[None, :]))


def alignment_cost(run_dir: Path, frames_root: Path, ids_file: Path, score_threshold: float, seed: int) -> dict:
    import dlib

    from atalaia.models.dlib_teacher import DlibEmbedder

    test = load_frames(frames_root, splits=("test",))
    dets = _detections(run_dir, len(test))
    ident: dict[str, int] = {}
    if ids_file.is_file():
        with open(ids_file, newline="") as fh:
            ident = {r["celeba_image"]: int(r["identity"]) for r in csv.DictReader(fh)}
    label_chips, det_chips, dlib_chips, who = [], [], [], []
    matches, n_faces = _matched(test, lambda f: dets[f], score_threshold)
    for f, k, det_points in matches:
        img, gb, glm = test.images[f], test.boxes[f], test.landmarks[f]
        label_chips.append(align_chip(img, glm[k], 150, 1.0))
        det_chips.append(align_chip(img, det_points, 150, 1.0))
        rect = dlib.rectangle(0, 0, img.shape[1] - 1, img.shape[0] - 1)
        shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in glm[k]])
        dlib_chips.append(np.asarray(dlib.get_face_chip(np.repeat(img[..., None], 3, 2), shape, size=150,
                                                        padding=0.25))[..., 0])
        name = test.names[f]
        who.append(ident.get(name.split("/", 1)[1], -1) if name.startswith("celeba/") and len(gb) == 1 else -1)
    emb = DlibEmbedder(cache=HERE / ".work" / "detection_dlib_embeddings.npz")  # label chips recur across runs
    t0 = time.perf_counter()
    e_label, e_det, e_dlib = (emb.embed_chips(np.stack(c)) for c in (label_chips, det_chips, dlib_chips))
    embed_s = time.perf_counter() - t0

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    cos_det = np.sum(unit(e_label) * unit(e_det), 1)
    cos_dlib = np.sum(unit(e_label) * unit(e_dlib), 1)
    out = {"recogniser": "dlib ResNet 128-d (the students' teacher), grey 150x150 chips, on the run's int8 detections "
                         "(detections.npz)",
           "faces_labelled": n_faces, "faces_aligned": len(det_chips),
           "cosine_detector_vs_label_points": {"mean": float(cos_det.mean()), "median": float(np.median(cos_det)),
                                               "p10": float(np.percentile(cos_det, 10)), "min": float(cos_det.min())},
           "cosine_dlib_get_face_chip_vs_one_warp": {"mean": float(cos_dlib.mean()),
                                                     "median": float(np.median(cos_dlib))},
           "embed_seconds": round(embed_s, 1)}
    known = [i for i, w in enumerate(who) if w >= 0]
    if known:
        a, b, same = _pairs([who[i] for i in known], seed)
        a, b = np.array(known)[a], np.array(known)[b]
        ver = {}
        for name, e in (("label_points", e_label), ("detector_points", e_det), ("dlib_get_face_chip", e_dlib)):
            dist = np.linalg.norm(e[a] - e[b], axis=1)
            ver[name] = {"accuracy_at_0.6": float(np.mean((dist < 0.6) == (same == 1))), "auc": _auc(-dist, same)}
        out["pairs"] = {"same": int(same.sum()), "different": int((same == 0).sum()),
                        "identities": len({who[i] for i in known}),
                        "protocol": "test-split CelebA frames with one labelled face, identity from "
                                    "identity_CelebA.txt (celeba_subset_299ids/labels.csv); dlib's fixed "
                                    "threshold 0.6 on Euclidean distance (not tuned on these pairs)",
                        "by_alignment": ver}
    return out


def _matched(test, dets_of, score_threshold: float):
    """(frame, label index, detector's 5 points) for every labelled test face the detector finds (IoU >= 0.5 at the
    operating threshold, greedy in label order: each detection matches at most one label), and the number of
    labelled faces."""
    out, n_faces = [], 0
    for f, gb in enumerate(test.boxes):
        b, s, lm = dets_of(f)
        keep = s >= score_threshold
        b, lm = b[keep], lm[keep]
        used = np.zeros(len(b), bool)
        for k in range(len(gb)):
            n_faces += 1
            if not len(b):
                continue
            ov = np.where(used, -1.0, iou(gb[k], b))
            best = int(np.argmax(ov))
            if ov[best] >= 0.5:
                used[best] = True
                out.append((f, k, lm[best]))
    return out, n_faces


def student_alignment_cost(det_run: Path, face_run: Path, frames_root: Path, ids_file: Path, seed: int) -> dict:
    """The alignment cost to the int8 student (LiteRT), on the device's own path: each test frame goes through
    `face.frame.FrameDetector` (letterbox, int8 detector, decode) exactly as `atalaia access check --detector`;
    for every labelled face it finds, three chips at the student's input (size, crop): one-warp from dlib's 5
    points (the labels), one-warp from the detector's 5 points (the device), and the training pipeline's chip
    (dlib get_face_chip 150 -> LANCZOS 112 -> crop -> LANCZOS size). Cosines between their embeddings (mirror
    TTA as the model was measured), and pairs accuracy at the student's LFW best-accuracy threshold (chosen on
    LFW pairs in the face run, NOT on these pairs) and AUC, per alignment."""
    import dlib

    from atalaia.data.align import resize_lanczos
    from atalaia.data.dataset import mirrored, to_float
    from atalaia.deploy.tflite import TFLiteRunner
    from atalaia.evaluate.verification import mirror_fuse
    from atalaia.face.access import load_detector
    from atalaia.face.data import grey_resize

    det = load_detector(det_run)
    rf = RunFolder(face_run)
    facts = json.loads(rf.path("int8_litert", "face_model.json").read_text())
    runner = TFLiteRunner(rf.path("int8_litert", "model.tflite").read_bytes())
    size, crop = int(facts["input_size"]), float(facts["crop"])
    test = load_frames(frames_root, splits=("test",))
    t0 = time.perf_counter()
    cache = [det.detect(img)[0] for img in test.images]
    det_s = time.perf_counter() - t0
    matched, n_faces = _matched(test, lambda f: (cache[f].boxes, cache[f].scores, cache[f].landmarks),
                                det.score_threshold)
    ident: dict[str, int] = {}
    if ids_file.is_file():
        with open(ids_file, newline="") as fh:
            ident = {r["celeba_image"]: int(r["identity"]) for r in csv.DictReader(fh)}
    chips: dict[str, list] = {"label_points": [], "detector_points": [], "dlib_get_face_chip": []}
    who = []
    for f, k, dlm in matched:
        img, glm = test.images[f], test.landmarks[f][k]
        chips["label_points"].append(align_chip(img, glm, size, crop))
        chips["detector_points"].append(align_chip(img, dlm, size, crop))
        rect = dlib.rectangle(0, 0, img.shape[1] - 1, img.shape[0] - 1)
        shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in glm])
        c150 = np.asarray(dlib.get_face_chip(np.repeat(img[..., None], 3, 2), shape, size=150, padding=0.25))
        chips["dlib_get_face_chip"].append(grey_resize(resize_lanczos(c150, 112)[None], size, crop)[0, ..., 0])
        name = test.names[f]
        who.append(ident.get(name.split("/", 1)[1], -1) if name.startswith("celeba/") and len(test.boxes[f]) == 1
                   else -1)

    def embed(c: list) -> np.ndarray:
        x = to_float(np.stack(c)[..., None])
        e = runner.predict(x)
        if facts.get("mirror_tta"):
            e = mirror_fuse(e, runner.predict(mirrored(x)))
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    t0 = time.perf_counter()
    emb = {k: embed(v) for k, v in chips.items()}
    embed_s = time.perf_counter() - t0

    def stats(a: np.ndarray, b: np.ndarray) -> dict:
        c = np.sum(a * b, 1)
        return {"mean": float(c.mean()), "median": float(np.median(c)), "p10": float(np.percentile(c, 10)),
                "min": float(c.min())}

    th = float(facts["threshold_lfw_accuracy"])
    out = {"recogniser": f"int8 student of {face_run} (LiteRT), {size}x{size} grey, crop {crop}, mirror TTA "
                         f"{bool(facts.get('mirror_tta'))}",
           "detector": f"int8 detector of {det_run} through face.frame (the access-check path), score threshold "
                       f"{det.score_threshold:g}",
           "faces_labelled": n_faces, "faces_aligned": len(matched),
           "cosine_detector_vs_label_points": stats(emb["detector_points"], emb["label_points"]),
           "cosine_detector_vs_dlib_get_face_chip": stats(emb["detector_points"], emb["dlib_get_face_chip"]),
           "cosine_dlib_get_face_chip_vs_label_points": stats(emb["dlib_get_face_chip"], emb["label_points"]),
           "detect_seconds": round(det_s, 1), "embed_seconds": round(embed_s, 1)}
    known = [i for i, w in enumerate(who) if w >= 0]
    if known:
        a, b, same = _pairs([who[i] for i in known], seed)
        a, b = np.array(known)[a], np.array(known)[b]
        ver = {}
        for name, e in emb.items():
            cos = np.sum(e[a] * e[b], 1)
            ver[name] = {"accuracy_at_lfw_threshold": float(np.mean((cos >= th) == (same == 1))),
                         "auc": _auc(cos, same)}
        out["pairs"] = {"same": int(same.sum()), "different": int((same == 0).sum()),
                        "identities": len({who[i] for i in known}),
                        "threshold": th,
                        "protocol": "the same test-split CelebA pairs as the dlib teacher's block (identities from "
                                    "identity_CelebA.txt); cosine threshold = the student's LFW best-accuracy "
                                    "threshold (threshold_lfw_accuracy of face_model.json, chosen on LFW pairs, not "
                                    "tuned on these pairs)",
                        "by_alignment": ver}
    return out


def frame_to_decision(det_run: Path, face_run: Path, q: dict, hw: list) -> dict:
    """Frame -> decision cost with the real models: MACs and est. latency (detector + recogniser inferences per
    face) from the two runs' reports, and the sequential peak RAM with the one shared arena the firmware links,
    measured: both models load and invoke in TFLM in exactly that many bytes (`check_shared_arena`)."""
    from atalaia.deploy.firmware import ARENA_MARGIN_BYTES, arena_with_margin
    from atalaia.deploy.tflm import check_shared_arena

    rec = RunFolder(face_run).metrics("int8_litert")["result"]  # the stage's row (verified by its checksums)
    facts = json.loads(RunFolder(face_run).path("int8_litert", "face_model.json").read_text())
    n_inf = 2 if facts.get("mirror_tta") else 1
    det_blob = _stage_file(det_run, "int8", "model.tflite").read_bytes()
    rec_blob = RunFolder(face_run).path("int8_litert", "model.tflite").read_bytes()
    shared = arena_with_margin(max(q["arena_bytes"], rec["arena_bytes"]))
    used = check_shared_arena([det_blob, rec_blob], shared)
    frame_bytes = 192 * 144  # the largest face_frames frame (longest side 192, 4:3), kept for the alignment warp
    chip_bytes = int(facts["input_size"]) ** 2  # atalaia_face_frame.c keeps the quantized chip for the mirror pass
    gallery_bytes = 64 * int(facts["embedding_dim"]) * 4 + 64 * 2 + 4  # atalaia_gallery_t, 64 templates
    peak = shared + frame_bytes + chip_bytes + gallery_bytes
    return {
        "recogniser": f"{rec['model']} int8 ({face_run}), {n_inf} inference(s) per face"
                      + (" (mirror TTA)" if n_inf == 2 else ""),
        "macs": int(q["macs"] + n_inf * rec["macs"]),
        "macs_detector": int(q["macs"]), "macs_recogniser_per_face": int(n_inf * rec["macs"]),
        "est_latency_ms": {t: round(q["est_latency_ms"][t] + n_inf * rec["est_latency_ms"][t], 1)
                           for t in q["est_latency_ms"] if t in (rec.get("est_latency_ms") or {})},
        "est_latency_note": "est.: the sum of the two models' MAC-based estimates (decode, NMS and the alignment "
                            "warp are not in the MACs)",
        "shared_arena": {"detector_measured_bytes": int(q["arena_bytes"]),
                         "recogniser_measured_bytes": int(rec["arena_bytes"]),
                         "linked_bytes": shared, "margin_bytes": ARENA_MARGIN_BYTES,
                         "used_in_shared_bytes": {"detector": used[0], "recogniser": used[1]},
                         "how": "both int8 models loaded and invoked in the TFLM runtime with exactly linked_bytes "
                                "(the firmware re-creates the interpreter in the one arena at each switch)"},
        "peak_ram_bytes": int(peak),
        "peak_ram_note": f"shared arena {shared} B + one grey camera frame 192x144 ({frame_bytes} B, kept for the "
                         f"alignment warp; the letterbox is written straight into the detector's input tensor) + "
                         f"the quantized chip kept for the mirror pass ({chip_bytes} B) + a 64-template gallery "
                         f"({gallery_bytes} B); stack and the interpreter object not counted",
        "under_200KB": bool(peak <= 200 * 1024)}


def emulated_firmware(det_run: Path, face_run: Path, tflm_root: Path) -> dict:
    """`export --detector` built for a Cortex-M4 and run in QEMU (`firmware_for_model`, project under
    benchmarks/.work): the arena each model used in the ONE linked arena on the target (CMSIS-NN kernels), the
    frame demo's decisions against the host's, and the recogniser's instructions per Invoke (emulated)."""
    from atalaia.api import load_run_model
    from atalaia.deploy.mcu import firmware_for_model

    m = load_run_model(face_run, detector=det_run)
    t0 = time.perf_counter()
    rec = firmware_for_model(m.blob, stored_input_q=m.stored_input_q, arena_bytes=m.arena_bytes, target="cortex-m4",
                             tflm_root=tflm_root, work_dir=HERE / ".work" / "detection_firmware", emulate=True,
                             face_facts=m.face_facts, frame=m.frame)
    fr = rec["frame"]
    return {"target": f"cortex-m4, {rec['qemu']['machine']} in QEMU, CMSIS-NN kernels; measured (emulated)",
            "seconds": round(time.perf_counter() - t0, 1),
            "linked_arena_bytes": rec["arena"]["linked_bytes"], "arena_used_on_target": fr["arena"],
            "frame_decisions_equal_host": fr["decisions_equal_host"], "frames": fr["device"],
            "recogniser_self_test_bit_exact": rec["self_test"]["bit_exact"],
            "flash_bytes_linked": rec["sizes"]["flash_bytes"], "ram_bytes_linked": rec["sizes"]["ram_bytes"],
            "recogniser_instructions_per_invoke": rec["instructions"]["per_invoke"],
            "note": "the demo frames are the detector run's stored self-test frame (enrolled) and its mirror image"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", default="runs/detection")
    ap.add_argument("--frames", default=str(SHARED / "face_frames"))
    ap.add_argument("--celeba-ids", default=str(SHARED / "celeba_subset_299ids" / "labels.csv"))
    ap.add_argument("--lfw-results", default=str(HERE / "results" / "lfw.json"))
    ap.add_argument("--face-run", default="runs/lfw", help="a finished face run: the int8 student for the "
                    "alignment cost and the frame -> decision numbers (else lfw.json / the dlib teacher only)")
    ap.add_argument("--out", default=str(HERE / "results" / "detection.json"))
    ap.add_argument("--no-alignment", action="store_true")
    ap.add_argument("--emulate", default=None, metavar="TFLM_ROOT",
                    help="also build the bundled firmware for a Cortex-M4 and run it in QEMU (a TFLM tree)")
    ap.add_argument("--no-teacher", action="store_true", help="skip the dlib-teacher alignment block (slow)")
    a = ap.parse_args(argv)
    run = Path(a.run_dir)
    rep = json.loads((run / "report.json").read_text())
    sec = rep["detection"]
    rows = {}
    for s in rep["stages"]:
        m = sec["per_stage"][s["stage"]]
        rows[s["stage"]] = {
            "dtype": s["dtype"], "ap50": m["ap50"], "ap50_95": m["ap50_95"], "precision": m["precision"],
            "recall": m["recall"], "recall_by_size": m["recall_by_size"], "nme": m["nme"],
            "nme_median": m["nme_median"], "fp_per_empty_frame": m["fp_per_empty_frame"],
            "params": s["params"], "macs": s["macs"], "flash_bytes": s["flash_bytes"],
            "arena_bytes": s["arena_bytes"], "host_latency_ms": s["host_latency_ms"],
            "est_latency_ms": s["est_latency_ms"]}
    q = rows["int8"]
    hw = sec["input_hw"]
    out = {"benchmark": "detection", "command": " ".join(["python", "benchmarks/detection.py", *sys.argv[1:]]),
           "run_dir": str(run), "label_note": LABEL_NOTE, "input_hw": hw,
           "score_threshold": sec["per_stage"]["int8"]["score_threshold"],
           "test": {"frames": sec["per_stage"]["int8"]["frames"], "faces": sec["per_stage"]["int8"]["faces"],
                    "empty_frames": sec["per_stage"]["int8"]["empty_frames"]},
           "rows": rows, "tflm": sec["int8"]["tflm"], "budgets": sec["int8"]["budgets"],
           "stage_seconds": rep.get("timings_s", {}), "recipe_train": rep["recipe"]["train"],
           "machine": {"python": platform.python_version(), "cpus": 2, "note": "2 CPU cores shared by 5 jobs"}}
    lfw_path = Path(a.lfw_results)
    face_run = Path(a.face_run)
    student = RunFolder(face_run).finished("int8_litert")
    if student:
        out["frame_to_decision"] = frame_to_decision(run, face_run, q, hw)
    elif lfw_path.is_file():
        lfw = json.loads(lfw_path.read_text())
        rec = next(r for r in lfw["rows"] if r["stage"] == "int8_litert" and r.get("tier", "S") in ("S", ""))
        n_inf = int(lfw.get("tiers", {}).get("S", lfw).get("inferences_per_face", 1))  # tiered file: the S tier
        frame_bytes = int(hw[0] * hw[1])
        out["frame_to_decision"] = {
            "recogniser": f"{rec['model']} int8 ({lfw_path.name}), {n_inf} inference(s) per face (mirror TTA)",
            "macs": int(q["macs"] + n_inf * rec["macs"]),
            "est_latency_ms": {t: round(q["est_latency_ms"][t] + n_inf * rec["est_latency_ms"][t], 1)
                               for t in q["est_latency_ms"] if t in rec["est_latency_ms"]},
            "peak_ram_bytes": int(max(q["arena_bytes"], rec["arena_bytes"]) + frame_bytes),
            "peak_ram_note": f"larger TFLM arena (detector {q['arena_bytes']} B, recogniser {rec['arena_bytes']} B) "
                             f"+ the {hw[0]}x{hw[1]} grey detector input ({frame_bytes} B); est., alignment "
                             "writes the recogniser's input tensor in place; a full camera frame (e.g. QVGA grey "
                             "76,800 B) kept for alignment adds to it",
            "under_200KB": bool(max(q["arena_bytes"], rec["arena_bytes"]) + frame_bytes <= 200 * 1024)}
    if student and a.emulate:
        out["firmware_emulated"] = emulated_firmware(run, face_run, Path(a.emulate))
    if student and not a.no_alignment:
        out["alignment_cost_student"] = student_alignment_cost(run, face_run, Path(a.frames), Path(a.celeba_ids),
                                                               seed=0)
    if not a.no_alignment and not a.no_teacher:
        out["alignment_cost"] = alignment_cost(run, Path(a.frames), Path(a.celeba_ids),
                                               out["score_threshold"], seed=0)
    atomic_write_json(Path(a.out), out)
    print(json.dumps({k: out[k] for k in ("rows", "frame_to_decision", "alignment_cost_student", "alignment_cost")
                      if k in out}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
