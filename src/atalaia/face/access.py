"""Face access control, the case study: enrol people, recognise a face, decide with a calibrated threshold, log.

This is what a door lock does with the face student, run on the host with the *exact* int8 `.tflite` that
`atalaia export` flashes (LiteRT reference kernels, which TFLM matches within one quantization step; see the
face report's parity line). Everything device-relevant comes from the run's `int8_litert/face_model.json`:
grey, centre crop, input size, and the cosine thresholds measured on LFW.

The threshold has to grow with the gallery: a stranger is compared with every template, so with T templates
and a pairwise false-accept rate p the door opens for a stranger with probability ~1 - (1 - p)^T. The pairs
protocol's FAR-1e-3 threshold lets in ~58 % of strangers against 158 enrolled LFW people (the report's
open-set line). The default, `open_far_1e-2`, re-derives the threshold from the current gallery size so that
about 1 % of strangers' attempts are accepted, using the tail of all cross-identity LFW pair scores stored
in face_model.json (`atalaia.evaluate.verification.open_set_threshold`). `far_1e-3`, `far_1e-2` and
`lfw_accuracy` are the fixed pairwise thresholds; a number is used as is.

Decision rule (the same as the report's open-set identification, so its rank-1 / FAR numbers describe this
app): the probe's embedding is compared with every enrolled template (one per enrolment image); the best
cosine similarity wins, and the door opens when it is >= the threshold.

State lives in one store (`atalaia.serve.store`): SQLite `RUN/access/access.db` by default, or PostgreSQL
(`db="postgresql://..."`, several doors sharing one gallery). People, templates (bound to the model's SHA-256:
a gallery is never matched against another model) and every enrolment / removal / decision as an event row,
written in one transaction with the notifications the service will deliver later. The file-based state of
earlier versions (`gallery.json`, `events.jsonl`) is imported once and then deleted.

A burst (the service's door mode: several frames of one visit) applies the same rule to every frame and
grants when a strict majority of the frames are granted as the same person (2 of 3). Measured on LFW with
the dlib teacher's embeddings (`benchmarks/access_burst.py`, a visit = 3 photos, threshold open_far_1e-2 for
25 templates): single frame refuses residents 2.13 % / admits strangers 0.70 %; majority 0.00 % / 0.39 %;
best-of-3 0.00 % / 1.56 % (a stranger gets 3 chances); and fusing the frames' embeddings 0.00 % / 3.05 %:
averaging pulls every face towards the embeddings' shared direction, so fused scores are not on the scale
the threshold was calibrated on. Majority voting keeps every score a single-image score.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from atalaia.data.dataset import mirrored, to_float
from atalaia.deploy.tflite import TFLiteRunner
from atalaia.deploy.tflm import tflm_runtime
from atalaia.errors import AtalaiaError, DataError
from atalaia.evaluate.verification import mirror_fuse, open_set_threshold
from atalaia.face.data import grey_resize, read_grey
from atalaia.face.frame import FrameDetector
from atalaia.ioutil import import_tensorflow_quietly
from atalaia.pipeline.runfolder import RunFolder
from atalaia.serve.store import Store, open_store

OPEN_SET = {"open_far_1e-2": 1e-2, "open_far_1e-3": 1e-3}  # gallery-size aware (recomputed as people enrol)
THRESHOLDS = (*OPEN_SET, "far_1e-3", "far_1e-2", "lfw_accuracy")
Image = str | Path | bytes  # a file, or the bytes of an uploaded image (the service never takes a path)


@dataclass(frozen=True)
class Decision:
    """One recognition attempt (one image, or a burst of `frames` frames decided by majority). `person` is the
    best match (also when refused, for the log); `granted` says whether the score reached the threshold (for a
    burst: whether a majority of frames did, as `person`; `score` is then that person's best frame score)."""

    image: str
    granted: bool
    person: str | None
    score: float
    threshold: float
    reason: str
    frames: int = 1
    faces: int = 1
    event_id: int | None = None
    box: tuple[float, float, float, float] | None = None  # the face used, frame pixels (detector path only)
    det_score: float | None = None  # the detector's score of that face
    timings_ms: dict[str, float] | None = None  # each step of the frame path (letterbox ... decide)


@dataclass(frozen=True)
class Probe:
    """A model input made from one image: x (S, S, 1) float [0, 1]; faces = faces the detector found (the
    largest is used; 1 for an aligned chip). With the on-device detector: the box and score of the face used
    and the milliseconds of each step."""

    x: np.ndarray
    faces: int
    box: tuple[float, float, float, float] | None = None
    det_score: float | None = None
    timings_ms: dict[str, float] | None = None


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def fuse(emb: np.ndarray) -> np.ndarray:
    """Unit embeddings (N, D) -> their normalised mean (D,). Not the burst rule (see the module docstring for
    why); kept for the burst benchmark's comparison."""
    return unit(np.asarray(emb, np.float64).mean(axis=0)).astype(np.float32)


def majority(frames: Sequence[tuple[str | None, float, float]]) -> tuple[str | None, float, bool, int]:
    """The burst rule over per-frame (person, score, threshold): (person, score, granted, votes). Granted when
    more than half of the frames are granted as the same person; otherwise the best frame's match is reported."""
    votes: dict[str, list[float]] = {}
    for person, score, th in frames:
        if person is not None and score >= th:
            votes.setdefault(person, []).append(score)
    need = len(frames) // 2 + 1
    if votes:
        who, scores = max(votes.items(), key=lambda kv: (len(kv[1]), max(kv[1])))
        if len(scores) >= need:
            return who, max(scores), True, len(scores)
    best = max(frames, key=lambda f: -np.inf if not np.isfinite(f[1]) else f[1])
    return best[0], best[1], False, len(votes.get(best[0], [])) if best[0] else 0


class AccessControl:
    """Enrol / check / remove against one face run's int8 model.

    run_dir: a finished `task: verification` run (its `int8_litert` stage). threshold: one of THRESHOLDS or a
    cosine value in (-1, 1). aligned: inputs are already 112x112 chips from `atalaia align`. detector: a
    finished detection run folder (or a `FrameDetector`): every image is a camera frame (grey or RGB, any
    size) and goes letterbox -> int8 detector -> largest face -> 5-point one-warp alignment, the device's path
    (`face.frame`). Neither: dlib detects and aligns (the host fallback, as the training chips were made).
    store / db: an open store, or a database URL (default: SQLite in `state_dir`, default `RUN/access/`).
    door: the name events are logged under. outbox: given an event, the notifications to queue with it
    (the service's MQTT/webhook targets). Thread-safe: the model runs under a lock, the gallery is
    re-read when another process (another door, the CLI) changed it.
    """

    def __init__(self, run_dir: str | Path, *, state_dir: str | Path | None = None,
                 threshold: str | float = "open_far_1e-2", aligned: bool = False, store: Store | None = None,
                 db: str | None = None, door: str = "cli", runtime: str = "litert",
                 detector: str | Path | FrameDetector | None = None,
                 outbox: Callable[[dict[str, Any]], list[tuple[str, str, dict[str, Any]]]] | None = None) -> None:
        run = RunFolder(run_dir)
        if not run.finished("int8_litert"):
            raise AtalaiaError(f"'{run_dir}' has no finished int8 face model (int8_litert stage: "
                               f"{run.problem('int8_litert')}): run `atalaia run recipes/lfw.yaml` (a verification "
                               "recipe) first")
        facts_path, blob_path = run.path("int8_litert", "face_model.json"), run.path("int8_litert", "model.tflite")
        self.facts: dict[str, Any] = json.loads(facts_path.read_text())
        blob = blob_path.read_bytes()
        self.model_sha256 = hashlib.sha256(blob).hexdigest()
        self.runtime = runtime
        self._runner = _runner(blob, runtime)
        self._model_lock = threading.Lock()
        self._fixed_threshold = None if threshold in OPEN_SET else self._threshold(threshold)
        self._open_far = OPEN_SET.get(threshold) if isinstance(threshold, str) else None
        self.threshold_rule = str(threshold)
        if self._open_far is not None and "impostor_tail" not in self.facts:
            raise AtalaiaError(f"{facts_path} has no impostor_tail (made by an older AtalaIA): run the recipe "
                               "again to refresh the int8 stage, or pass a fixed threshold (far_1e-3 or a number)")
        self.aligned = aligned
        if aligned and detector is not None:
            raise AtalaiaError("--aligned (chips) and --detector (frames) exclude each other: pick one")
        self.detector = (load_detector(detector, runtime) if isinstance(detector, str | Path) else detector)
        self._detector_lock = threading.Lock()  # one detector interpreter: one frame at a time (the service)
        self.door = door
        self.outbox = outbox
        self.state_dir = Path(state_dir) if state_dir else Path(run_dir) / "access"
        self.store = store if store is not None else open_store(db, self.state_dir)
        self.imported = self.store.import_legacy(self.state_dir, self.model_sha256)
        self._bind_model()
        self._gallery_lock = threading.Lock()
        self._version = -1
        self._names: list[str] = []
        self._mat = np.zeros((0, int(self.facts["embedding_dim"])), np.float32)
        self._refresh()

    # ------------------------------------------------------------------------------------------ setup
    def _threshold(self, t: str | float) -> float:
        if isinstance(t, str) and t in THRESHOLDS:
            v = float(self.facts.get(f"threshold_{t}", float("nan")))
            if not np.isfinite(v):
                raise AtalaiaError(f"face_model.json has no finite threshold_{t}; pass a number instead")
            return v
        try:
            v = float(t)
        except (TypeError, ValueError):
            raise AtalaiaError(f"threshold must be one of {', '.join(THRESHOLDS)} or a cosine value, "
                               f"got '{t}'") from None
        if not -1.0 < v < 1.0:
            raise AtalaiaError(f"a cosine threshold must be in (-1, 1), got {v}")
        return v

    def _bind_model(self) -> None:
        sha = self.store.get_meta("model_sha256")
        if sha is None or (sha != self.model_sha256 and not self.store.people()):
            self.store.set_meta("model_sha256", self.model_sha256)
        elif sha != self.model_sha256:
            raise DataError(f"the gallery in {self.store.url.split('@')[-1]} was enrolled with another model "
                            f"(sha256 {sha[:12]}, this run's is {self.model_sha256[:12]}): templates of different "
                            "models cannot be compared. Re-enrol with this model (another --state / --db, or "
                            "remove everyone)")

    def _refresh(self) -> None:
        """Re-read the templates when the store's gallery changed (enrolled elsewhere, another door)."""
        v = self.store.gallery_version
        if v == self._version:
            return
        with self._gallery_lock:
            names, mat = self.store.gallery()
            self._names = names
            self._mat = mat if len(names) else np.zeros((0, int(self.facts["embedding_dim"])), np.float32)
            self._version = v

    @property
    def threshold(self) -> float:
        """The cosine threshold in force now (open-set thresholds depend on how many templates are enrolled)."""
        self._refresh()
        return self.threshold_for(len(self._names))

    def threshold_for(self, templates: int) -> float:
        """The threshold this rule would use with `templates` enrolled templates (an empty gallery counts 1)."""
        if self._fixed_threshold is not None:
            return self._fixed_threshold
        return open_set_threshold(self.facts["impostor_tail"], max(1, int(templates)), float(self._open_far))[0]

    @property
    def stands_for(self) -> str:
        """What the threshold in force means for strangers, in words (shown next to every decision)."""
        if self._open_far is not None:
            return (f"about {100 * self._open_far:g}% of strangers' attempts accepted with the "
                    f"{max(1, len(self._names))} enrolled template(s) (LFW impostor tail)")
        if self.threshold_rule.startswith("far_"):
            return f"{self.threshold_rule[4:]} false accepts per stranger-template pair (LFW pairs)"
        if self.threshold_rule == "lfw_accuracy":
            return "LFW best-accuracy threshold (no stranger-rate target)"
        return "a fixed cosine threshold (no measured stranger rate)"

    @property
    def warning(self) -> str | None:
        """Why the open-set target cannot be met with this gallery (too many templates for the measured impostor
        tail), else None."""
        if self._open_far is None:
            return None
        self._refresh()
        t = max(1, len(self._names))
        p = 1.0 - (1.0 - self._open_far) ** (1.0 / t)
        p_min = min(float(k) for k in self.facts["impostor_tail"]["thresholds"])
        if p >= p_min:
            return None
        return (f"{t} templates need a pairwise FAR of {p:.1e}, below the smallest one measured ({p_min:g}): the "
                f"strictest measured threshold is used and about {100 * (1 - (1 - p_min) ** t):.1f}% of strangers' "
                f"attempts may be accepted (target {100 * self._open_far:g}%); enrol fewer templates per person")

    # ------------------------------------------------------------------------------------------ embedding
    @property
    def people(self) -> dict[str, int]:
        """Enrolled names -> number of templates."""
        return {p.name: p.templates for p in self.store.people()}

    def probe(self, image: Image, label: str | None = None) -> Probe:
        """One image (file or bytes) -> the model input, preprocessed as the model was trained. DataError when
        it is unreadable or has no face."""
        label = label or (str(image) if not isinstance(image, bytes) else "the upload")
        src = io.BytesIO(image) if isinstance(image, bytes) else Path(image)
        size, crop = int(self.facts["input_size"]), float(self.facts["crop"])
        if self.aligned:  # a chip: read exactly as the LFW evaluation chips were
            try:
                g = read_grey(src, size, crop)
            except DataError as e:
                raise DataError(str(e).replace(str(src), label)) from None
            return Probe(to_float(g[..., None]), 1)
        if self.detector is not None:
            return self._frame_probe(src, label, size, crop)
        import_tensorflow_quietly()  # dlib's weights are located via atalaia.models, which imports Keras
        from atalaia.data.align import align_face, load_image_rgb

        try:
            rgb = load_image_rgb(src)
        except DataError as e:
            raise DataError(str(e).replace(str(src), label)) from None
        res = align_face(rgb)
        if res is None:
            raise DataError(f"no face found in {label}")
        return Probe(to_float(grey_resize(res.chip[None], size, crop)[0]), int(res.n_faces))

    def _frame_probe(self, src: io.BytesIO | Path, label: str, size: int, crop: float) -> Probe:
        """A camera frame through the device's path (`face.frame`); DataError when it has no face."""
        from atalaia.data.images import read_8bit

        t0 = time.perf_counter()
        try:
            frame = np.asarray(read_8bit(src, "L"), np.uint8)
        except DataError as e:
            raise DataError(str(e).replace(str(src), label)) from None
        read_ms = 1e3 * (time.perf_counter() - t0)
        with self._detector_lock:
            face = self.detector.face(frame, size, crop)
        if face is None:
            raise DataError(f"no face found in {label} (no detection above the detector's score threshold "
                            f"{self.detector.score_threshold:g})")
        return Probe(to_float(face.chip[..., None]), face.faces, face.box, face.score,
                     {"read": read_ms, **face.timings_ms})

    def embed_inputs(self, x: np.ndarray) -> np.ndarray:
        """Model inputs (N, S, S, 1) -> unit embeddings (N, D), with mirror TTA when the model was measured so."""
        with self._model_lock:  # one interpreter: one inference at a time
            emb = self._runner.predict(x)
            if self.facts.get("mirror_tta"):  # the model was measured with mirror TTA: decide the same way
                emb = mirror_fuse(emb, self._runner.predict(mirrored(x)))
        return unit(emb).astype(np.float32)

    def embed(self, images: Sequence[Image]) -> tuple[np.ndarray, list[tuple[str, str]]]:
        """Unit embeddings of the readable images with a face, plus (image, reason) for the others."""
        xs, bad = [], []
        for k, p in enumerate(images):
            label = str(p) if not isinstance(p, bytes) else f"upload {k + 1}"
            try:
                xs.append(self.probe(p, label).x)
            except (DataError, ImportError) as e:
                bad.append((label, str(e)))
        if not xs:
            return np.zeros((0, int(self.facts["embedding_dim"])), np.float32), bad
        return self.embed_inputs(np.stack(xs)), bad

    # ------------------------------------------------------------------------------------------ actions
    def enrol(self, name: str, images: Sequence[Image], *, photos: Sequence[bytes | None] | None = None,
              source: str = "local") -> dict[str, Any]:
        """Add one template per usable image to `name` (created if new). Nothing is saved when no image is
        usable. photos: the bytes to keep with each image's template (only with the service's --keep-photos).
        Returns {"name", "added", "templates", "skipped": [(image, reason)]}."""
        name = name.strip()
        if not name:
            raise AtalaiaError("a person needs a non-empty name")
        emb, bad = self.embed(images)
        if len(emb) == 0:
            raise DataError(f"none of the {len(images)} image(s) for '{name}' gave a face: "
                            + "; ".join(f"{p}: {r}" for p, r in bad[:5]))
        skipped = {p for p, _ in bad}
        kept = None
        if photos is not None:
            labels = [str(p) if not isinstance(p, bytes) else f"upload {k + 1}" for k, p in enumerate(images)]
            kept = [ph for lab, ph in zip(labels, photos, strict=True) if lab not in skipped]
        n = self.store.add_templates(name, np.round(emb, 6), kept, event={
            "door": self.door, "kind": "enrol", "source": source,
            "reason": f"{len(emb)} template(s) added" + (f", {len(bad)} image(s) skipped" if bad else "")})
        self._refresh()
        return {"name": name, "added": len(emb), "templates": n, "skipped": bad}

    def remove(self, name: str) -> int:
        """Forget a person: templates, kept photos, and their name and images on past events (the rows keep
        a pseudonymous id). Returns how many templates were deleted."""
        n = self.store.delete_person(name, event={"door": self.door, "kind": "remove", "source": "local"})
        if n == 0:
            raise AtalaiaError(f"'{name}' is not enrolled (enrolled: {', '.join(self.people) or 'nobody'})")
        self._refresh()
        return n

    def match(self, emb: np.ndarray) -> tuple[str | None, float, float]:
        """The decision rule: (best-matching person, cosine, threshold in force) for one unit embedding."""
        self._refresh()
        with self._gallery_lock:
            names, mat = self._names, self._mat
        th = self.threshold_for(len(names))
        if not names:
            return None, float("nan"), th
        sims = mat @ np.asarray(emb, np.float32)
        i = int(sims.argmax())
        return names[i], float(sims[i]), th

    def decide(self, emb: np.ndarray, *, image: str = "", faces: int = 1, photo: bytes | None = None,
               source: str = "local") -> Decision:
        """Decide on unit embeddings: (D,) one frame, or (N, D) a burst (majority of frames), log the event,
        queue notifications."""
        e = np.atleast_2d(np.asarray(emb, np.float32))
        per_frame = [self.match(x) for x in e]
        person, s, ok, votes = majority(per_frame)
        th = per_frame[0][2]
        if len(e) == 1:
            reason = "match" if ok else "best match below the threshold"
        else:
            reason = (f"{votes} of {len(e)} frames matched the best person"  # no name: it is in `person`
                      + ("" if ok else f" (a majority of {len(e) // 2 + 1} is needed)"))
        if faces > 1:
            reason += f" ({faces} faces in the image: the largest was used)"
        return self._record(Decision(image, ok, person, s, th, reason, len(e), faces), photo, source)

    def refuse(self, image: str, reason: str, *, frames: int = 1, source: str = "local") -> Decision:
        """Log a refusal that never reached the model (unreadable image, no face)."""
        return self._record(Decision(image, False, None, float("nan"), self.threshold, reason, frames, 0),
                            None, source)

    def _record(self, d: Decision, photo: bytes | None, source: str) -> Decision:
        ev = {"door": self.door, "kind": "check", "source": source, "person": d.person, "granted": d.granted,
              "score": d.score if np.isfinite(d.score) else None, "threshold": d.threshold,
              "far": self.threshold_rule, "frames": d.frames, "reason": d.reason, "image": photo}
        eid = self.store.add_event(ev, self.outbox(event_payload(ev, self.door)) if self.outbox else ())
        return Decision(**{**asdict(d), "event_id": eid})

    def check(self, image: Image) -> Decision:
        """Recognise one image and decide. An unreadable image or one without a face is refused (and logged)."""
        return self.check_burst([image])

    def check_burst(self, images: Sequence[Image], *, photo: bytes | None = None,
                    source: str = "local") -> Decision:
        """Decide over a burst of frames of one visit: the frames with a face vote (majority, see `majority`).
        Refused (and logged) when no frame has a face."""
        self._refresh()
        if not self._names:
            raise AtalaiaError("nobody is enrolled: run `atalaia access enrol` first")
        label = ", ".join(str(p) if not isinstance(p, bytes) else f"frame {k + 1}" for k, p in enumerate(images))
        probes, bad = [], []
        for k, p in enumerate(images):
            try:
                probes.append(self.probe(p, str(p) if not isinstance(p, bytes) else f"frame {k + 1}"))
            except (DataError, ImportError) as e:
                bad.append(str(e))
        if not probes:
            return self.refuse(label, bad[0], frames=len(images), source=source)
        t0 = time.perf_counter()
        emb = self.embed_inputs(np.stack([pr.x for pr in probes]))
        t1 = time.perf_counter()
        d = self.decide(emb, image=label, faces=max(pr.faces for pr in probes), photo=photo, source=source)
        if len(probes) == 1 and probes[0].box is not None:
            ms = {**(probes[0].timings_ms or {}), "recogniser": 1e3 * (t1 - t0),
                  "decide": 1e3 * (time.perf_counter() - t1)}
            d = replace(d, box=probes[0].box, det_score=probes[0].det_score, timings_ms=ms)
        return d


def load_detector(run_dir: str | Path, runtime: str = "litert") -> FrameDetector:
    """The int8 detector of a finished `task: detection` run (its `int8` stage, checksums verified) with the
    operating point of the run's recipe.yaml (score threshold, NMS IoU, max detections)."""
    from atalaia.config import load_recipe

    run = RunFolder(run_dir)
    if not run.finished("int8"):
        raise AtalaiaError(f"--detector '{run_dir}' has no finished int8 detector (int8 stage: "
                           f"{run.problem('int8')}): run `atalaia run recipes/detection.yaml` first")
    oq = run.metrics("int8").get("extra", {}).get("output_quantization")
    if not isinstance(oq, dict) or "scale" not in oq or "zero_point" not in oq:
        raise AtalaiaError(f"{run.stage_dir('int8') / 'metrics.json'} has no output_quantization: '{run_dir}' is "
                           "not a detection run (task: detection); pass one as --detector")
    path = Path(run_dir) / "recipe.yaml"
    try:
        r = load_recipe(path)
    except AtalaiaError as e:
        raise AtalaiaError(f"the detector's operating point is read from {path}: {e}") from None
    if r.task != "detection":
        raise AtalaiaError(f"{path} is a '{r.task}' recipe: pass a detection run (task: detection) as --detector")
    dc = r.detection
    return FrameDetector(run.path("int8", "model.tflite").read_bytes(), output_scale=float(oq["scale"]),
                         output_zero_point=int(oq["zero_point"]), score_threshold=dc.score_threshold,
                         nms_iou=dc.nms_iou, max_detections=dc.max_detections, runtime=runtime,
                         source=str(run.stage_dir("int8") / "model.tflite"))


def event_payload(ev: dict[str, Any], door: str) -> dict[str, Any]:
    """The JSON a decision is published as (MQTT / webhook): no template, no image."""
    return {"door": door, "kind": ev.get("kind"), "granted": ev.get("granted"), "person": ev.get("person"),
            "score": ev.get("score"), "threshold": ev.get("threshold"), "far": ev.get("far"),
            "frames": ev.get("frames"), "reason": ev.get("reason"), "source": ev.get("source")}


class _TflmRunner:
    """`predict` like TFLiteRunner's, through the TFLM interpreter (one sample per invoke, as on the chip);
    quantization at the int8 boundary with the model's own scale and zero point."""

    def __init__(self, blob: bytes, arena_size: int = 2 << 20) -> None:
        self._q = TFLiteRunner(blob)  # quantization parameters only
        self._it = tflm_runtime().Interpreter.from_bytes(bytes(blob), arena_size=arena_size)

    def predict(self, x: np.ndarray) -> np.ndarray:
        xq = self._q.quantize_input(np.asarray(x, np.float32))
        out = []
        for i in range(len(xq)):
            self._it.set_input(xq[i : i + 1], 0)
            self._it.invoke()
            out.append(np.asarray(self._it.get_output(0)).reshape(1, -1))
        return self._q.dequantize_output(np.concatenate(out))


def _runner(blob: bytes, runtime: str) -> Any:
    """LiteRT (reference kernels) by default; `tflm` runs the TFLM interpreter, bit for bit the device's."""
    if runtime == "litert":
        return TFLiteRunner(blob)
    if runtime == "tflm":
        return _TflmRunner(blob)
    raise AtalaiaError(f"--runtime must be litert or tflm, got '{runtime}'")


__all__ = ["AccessControl", "Decision", "OPEN_SET", "Probe", "THRESHOLDS", "event_payload", "fuse", "load_detector",
           "majority", "unit"]
