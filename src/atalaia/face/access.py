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

State lives in one folder (default `RUN/access/`): `gallery.json` (names, templates, the model's SHA-256 so a
gallery is never matched against another model) written atomically, and `events.jsonl`, one JSON line per
enrolment or decision, appended and flushed line by line (an audit log is never rewritten).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atalaia.data.dataset import mirrored, to_float
from atalaia.deploy.tflite import TFLiteRunner
from atalaia.errors import AtalaiaError, DataError
from atalaia.evaluate.verification import mirror_fuse, open_set_threshold
from atalaia.face.data import grey_resize, read_grey
from atalaia.ioutil import atomic_write_json, import_tensorflow_quietly
from atalaia.pipeline.runfolder import RunFolder

OPEN_SET = {"open_far_1e-2": 1e-2, "open_far_1e-3": 1e-3}  # gallery-size aware (recomputed as people enrol)
THRESHOLDS = (*OPEN_SET, "far_1e-3", "far_1e-2", "lfw_accuracy")


@dataclass(frozen=True)
class Decision:
    """One recognition attempt. `person` is the best match (also when refused, for the log); `granted` says
    whether the score reached the threshold."""

    image: str
    granted: bool
    person: str | None
    score: float
    threshold: float
    reason: str


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class AccessControl:
    """Enrol / check / remove against one face run's int8 model.

    run_dir: a finished `task: verification` run (its `int8_litert` stage). threshold: one of THRESHOLDS or a
    cosine value in (-1, 1). aligned: inputs are already 112x112 chips from `atalaia align` (else every
    image is detected and aligned with dlib first, exactly as the training chips were made).
    """

    def __init__(self, run_dir: str | Path, *, state_dir: str | Path | None = None,
                 threshold: str | float = "open_far_1e-2", aligned: bool = False) -> None:
        run = RunFolder(run_dir)
        if not run.finished("int8_litert"):
            raise AtalaiaError(f"'{run_dir}' has no finished int8 face model (int8_litert stage: "
                               f"{run.problem('int8_litert')}): run `atalaia run recipes/lfw.yaml` (a verification "
                               "recipe) first")
        facts_path, blob_path = run.path("int8_litert", "face_model.json"), run.path("int8_litert", "model.tflite")
        self.facts: dict[str, Any] = json.loads(facts_path.read_text())
        blob = blob_path.read_bytes()
        self.model_sha256 = hashlib.sha256(blob).hexdigest()
        self._runner = TFLiteRunner(blob)
        self._fixed_threshold = None if threshold in OPEN_SET else self._threshold(threshold)
        self._open_far = OPEN_SET.get(threshold) if isinstance(threshold, str) else None
        if self._open_far is not None and "impostor_tail" not in self.facts:
            raise AtalaiaError(f"{facts_path} has no impostor_tail (made by an older AtalaIA): run the recipe "
                               "again to refresh the int8 stage, or pass a fixed threshold (far_1e-3 or a number)")
        self.aligned = aligned
        self.state_dir = Path(state_dir) if state_dir else Path(run_dir) / "access"
        self.gallery_path = self.state_dir / "gallery.json"
        self.log_path = self.state_dir / "events.jsonl"
        self._people: dict[str, list[list[float]]] = self._load_gallery()

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

    def _load_gallery(self) -> dict[str, list[list[float]]]:
        if not self.gallery_path.is_file():
            return {}
        try:
            doc = json.loads(self.gallery_path.read_text())
            people = doc["people"]
            sha = doc["model_sha256"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataError(f"{self.gallery_path} is not an AtalaIA gallery ({type(e).__name__}: {e}); "
                            "move it away to start a new one") from None
        if sha != self.model_sha256:
            raise DataError(f"{self.gallery_path} was enrolled with another model (sha256 {sha[:12]}, this "
                            f"run's is {self.model_sha256[:12]}): templates of different models cannot be "
                            "compared. Re-enrol with this model (use another --state folder or delete it)")
        return {str(k): v for k, v in people.items()}

    def _save(self) -> None:
        atomic_write_json(self.gallery_path, {
            "model_sha256": self.model_sha256, "embedding_dim": int(self.facts["embedding_dim"]),
            "people": self._people})

    def _log(self, event: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **event}) + "\n"
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    @property
    def threshold(self) -> float:
        """The cosine threshold in force now (open-set thresholds depend on how many templates are enrolled)."""
        return self.threshold_for(sum(self.people.values()))

    def threshold_for(self, templates: int) -> float:
        """The threshold this rule would use with `templates` enrolled templates (an empty gallery counts 1)."""
        if self._fixed_threshold is not None:
            return self._fixed_threshold
        return open_set_threshold(self.facts["impostor_tail"], max(1, int(templates)), float(self._open_far))[0]

    @property
    def warning(self) -> str | None:
        """Why the open-set target cannot be met with this gallery (too many templates for the measured impostor
        tail), else None."""
        if self._open_far is None:
            return None
        t = max(1, sum(self.people.values()))
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
        return {k: len(v) for k, v in sorted(self._people.items())}

    def _model_input(self, path: Path) -> np.ndarray:
        """One image file -> (S, S, 1) float [0, 1], preprocessed as the model was trained."""
        size, crop = int(self.facts["input_size"]), float(self.facts["crop"])
        if self.aligned:  # a chip file: read exactly as the LFW evaluation chips were
            return to_float(read_grey(path, size, crop)[..., None])
        import_tensorflow_quietly()  # dlib's weights are located via atalaia.models, which imports Keras
        from atalaia.data.align import align_face, load_image_rgb

        res = align_face(load_image_rgb(path))
        if res is None:
            raise DataError(f"no face found in {path}")
        return to_float(grey_resize(res.chip[None], size, crop)[0])

    def embed(self, images: list[str | Path]) -> tuple[np.ndarray, list[tuple[str, str]]]:
        """Unit embeddings of the readable images with a face, plus (path, reason) for the others."""
        xs, bad = [], []
        for p in images:
            try:
                xs.append(self._model_input(Path(p)))
            except (DataError, ImportError) as e:
                bad.append((str(p), str(e)))
        if not xs:
            return np.zeros((0, int(self.facts["embedding_dim"])), np.float32), bad
        x = np.stack(xs)
        emb = self._runner.predict(x)
        if self.facts.get("mirror_tta"):  # the model was measured with mirror TTA: decide the same way
            emb = mirror_fuse(emb, self._runner.predict(mirrored(x)))
        return _unit(emb).astype(np.float32), bad

    # ------------------------------------------------------------------------------------------ actions
    def enrol(self, name: str, images: list[str | Path]) -> dict[str, Any]:
        """Add one template per usable image to `name` (created if new). Nothing is saved when no image is
        usable. Returns {"name", "added", "templates", "skipped": [(path, reason)]}."""
        name = name.strip()
        if not name:
            raise AtalaiaError("a person needs a non-empty name")
        emb, bad = self.embed(images)
        if len(emb) == 0:
            raise DataError(f"none of the {len(images)} image(s) for '{name}' gave a face: "
                            + "; ".join(f"{p}: {r}" for p, r in bad[:5]))
        self._people.setdefault(name, []).extend(np.round(emb, 6).tolist())
        self._save()
        self._log({"event": "enrol", "person": name, "added": len(emb), "skipped": [p for p, _ in bad]})
        return {"name": name, "added": len(emb), "templates": len(self._people[name]), "skipped": bad}

    def remove(self, name: str) -> int:
        """Forget a person; returns how many templates were deleted."""
        if name not in self._people:
            raise AtalaiaError(f"'{name}' is not enrolled (enrolled: {', '.join(self.people) or 'nobody'})")
        n = len(self._people.pop(name))
        self._save()
        self._log({"event": "remove", "person": name, "templates": n})
        return n

    def check(self, image: str | Path) -> Decision:
        """Recognise one image and decide. An unreadable image or one without a face is refused (and logged)."""
        if not self._people:
            raise AtalaiaError("nobody is enrolled: run `atalaia access enrol` first")
        emb, bad = self.embed([image])
        th = self.threshold
        if bad:
            d = Decision(str(image), False, None, float("nan"), th, bad[0][1])
        else:
            names = [n for n, ts in self._people.items() for _ in ts]
            sims = np.asarray([t for ts in self._people.values() for t in ts], np.float32) @ emb[0]
            i = int(sims.argmax())
            s = float(sims[i])
            ok = s >= th
            d = Decision(str(image), ok, names[i], s, th, "match" if ok else "best match below the threshold")
        self._log({"event": "check", **{k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                                        for k, v in asdict(d).items()}})
        return d


__all__ = ["AccessControl", "Decision", "OPEN_SET", "THRESHOLDS"]
