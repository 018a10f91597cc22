"""Face detection benchmark (issue 13): a finished `task: detection` run -> benchmarks/results/detection.json.

Usage:
    python benchmarks/detection.py --run-dir runs/detection [--frames DIR] [--celeba-ids FILE]
                                   [--out benchmarks/results/detection.json]

Reports, from the run: AP@0.5, AP@0.5:0.95, recall by face size, landmark NME, false positives per empty frame,
params, MACs, flash, TFLM arena, est. latency per target, for the float and int8 detectors. All against dlib
PSEUDO-LABELS (they miss small and profile faces).

Then the alignment cost to the recogniser. No trained face-recognition student run exists on this machine, so
the recogniser here is dlib's ResNet (the teacher the students are distilled from), on 150x150 grey chips:
for every labelled test face the int8 detector finds (IoU >= 0.5 at the operating threshold), a chip aligned
from dlib's 5 points (the labels) and one from the detector's 5 points, both with the device's one-warp
bilinear alignment (`face.align5`), are embedded; we report their cosine, and verification on pairs of test
frames (identities from the CelebA identity file of `celeba_subset_299ids`: same-person pairs of test frames,
as many different-person pairs drawn with a fixed seed) at dlib's fixed threshold 0.6 (Euclidean) and as ROC
AUC, with each alignment. The chip from dlib's own `get_face_chip` (label points) is also embedded, to show
what the one-warp resampling alone costs.

Frame to decision: detector MACs + the recogniser's (from benchmarks/results/lfw.json, the int8 student with
mirror TTA), est. latency per target (sum of the two estimates), and the sequential peak RAM = the larger TFLM
arena + the detector's input frame buffer (the arenas are reused one after the other).
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
    n_faces = 0
    for f, (img, gb, glm) in enumerate(zip(test.images, test.boxes, test.landmarks, strict=True)):
        b, s, lm = dets[f]
        keep = s >= score_threshold
        b, lm = b[keep], lm[keep]
        used = np.zeros(len(b), bool)
        for k in range(len(gb)):
            n_faces += 1
            if not len(b):
                continue
            ov = np.where(used, -1.0, iou(gb[k], b))
            best = int(np.argmax(ov))
            if ov[best] < 0.5:
                continue
            used[best] = True
            label_chips.append(align_chip(img, glm[k], 150, 1.0))
            det_chips.append(align_chip(img, lm[best], 150, 1.0))
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
    out = {"recogniser": "dlib ResNet 128-d (teacher; no trained student run on this machine), grey 150x150 chips",
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", default="runs/detection")
    ap.add_argument("--frames", default=str(SHARED / "face_frames"))
    ap.add_argument("--celeba-ids", default=str(SHARED / "celeba_subset_299ids" / "labels.csv"))
    ap.add_argument("--lfw-results", default=str(HERE / "results" / "lfw.json"))
    ap.add_argument("--out", default=str(HERE / "results" / "detection.json"))
    ap.add_argument("--no-alignment", action="store_true")
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
    if lfw_path.is_file():
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
    if not a.no_alignment:
        out["alignment_cost"] = alignment_cost(run, Path(a.frames), Path(a.celeba_ids),
                                               out["score_threshold"], seed=0)
    atomic_write_json(Path(a.out), out)
    print(json.dumps({k: out[k] for k in ("rows", "frame_to_decision", "alignment_cost") if k in out}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
