"""The staged run folder: stage keys, atomic saves, DONE markers with checksums, resume; and `RunFolder`, the
read-only view every reader of a run folder uses (`cli`, `face.access` callers, the tuner, `export`).

Layout: `<run>/recipe.yaml`, one folder per stage (`<run>/<stage>/...`), `report.json` / `.md` / `.html`.
A stage writes its artifacts into its folder, then `metrics.json`, then `DONE.json` last by atomic rename.
`DONE.json` holds the stage key (a hash of everything the stage consumes) and the size and SHA-256 of every file
the stage wrote. A stage is skipped only when its key matches AND every recorded file still has that size and
hash: a truncated model (disk full, a copy gone wrong) is noticed, said in one line, and the stage re-run.
A folder without a valid marker is a stage that was interrupted, or whose inputs changed: it starts from scratch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from atalaia.errors import AtalaiaError
from atalaia.evaluate.result import StageResult
from atalaia.ioutil import atomic_write_json

MARKER = "DONE.json"
METRICS = "metrics.json"
MARKER_VERSION = 2  # 2: artifacts with size + sha256


def stage_key(*parts: Any) -> str:
    """Cache key of a stage: a hash of everything it depends on (config objects, upstream keys, data)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def now_utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def save_keras(model: Any, path: Path) -> None:
    """`model.save` to a temp name then rename: a killed run never leaves a half-written model."""
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    model.save(tmp)
    os.replace(tmp, path)


def file_digest(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def _artifacts(stage_dir: Path) -> dict[str, dict[str, Any]]:
    """Size + SHA-256 of every file a stage wrote (relative paths), the marker itself excluded."""
    return {p.relative_to(stage_dir).as_posix(): file_digest(p)
            for p in sorted(stage_dir.rglob("*")) if p.is_file() and p.name != MARKER and not p.name.startswith(".")}


def write_marker(stage_dir: Path, key: str) -> None:
    """Seal a stage folder: DONE.json with the key and the size + SHA-256 of every file in it, by atomic rename.
    Written last; the stage counts as finished only while the files still match."""
    atomic_write_json(stage_dir / MARKER, {"version": MARKER_VERSION, "key": key, "finished": now_utc(),
                                           "artifacts": _artifacts(stage_dir)})


@dataclass(frozen=True)
class StageOutcome:
    """What a finished stage produced: its table row, its extras (task-specific facts), and its wall time."""

    result: StageResult
    extra: dict[str, Any]
    seconds: float


class RunFolder:
    """Read-only access to a run folder. Every file handed out has been checked against its stage's DONE.json.

    >>> rf = RunFolder("runs/default")
    >>> rf.finished("int8"), rf.path("int8", "model.tflite"), rf.metrics("int8")["result"]["arena_bytes"]
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def marker(self, stage: str) -> dict[str, Any] | None:
        try:
            m = json.loads((self.stage_dir(stage) / MARKER).read_text())
        except (OSError, ValueError):
            return None
        return m if isinstance(m, dict) else None

    def problem(self, stage: str, key: str | None = None) -> str | None:
        """Why the stage cannot be trusted (None when it can): no marker, another key, or a damaged file."""
        m = self.marker(stage)
        if m is None:
            return "not finished"
        if key is not None and m.get("key") != key:
            return "its inputs changed"
        arts = m.get("artifacts")
        if not isinstance(arts, dict) or METRICS not in arts:
            return "finished by an older AtalaIA without checksums"
        d = self.stage_dir(stage)
        for name, want in arts.items():
            p = d / name
            if not p.is_file():
                return f"{p} is missing"
            if p.stat().st_size != want.get("bytes"):
                return f"{p} has {p.stat().st_size} bytes, {want.get('bytes')} were written"
            if file_digest(p)["sha256"] != want.get("sha256"):
                return f"{p} no longer matches the SHA-256 written with it"
        return None

    def finished(self, stage: str) -> bool:
        return self.problem(stage) is None

    def first_finished(self, *stages: str) -> str | None:
        return next((s for s in stages if self.finished(s)), None)

    def require(self, stage: str) -> Path:
        why = self.problem(stage)
        if why is not None:
            raise AtalaiaError(f"stage '{stage}' of run '{self.root}' is not usable ({why}): "
                               f"run `atalaia run` on it again")
        return self.stage_dir(stage)

    def path(self, stage: str, name: str) -> Path:
        """A verified artifact of a finished stage; a clear error if the stage is unfinished or the file damaged."""
        d = self.require(stage)
        if name not in (self.marker(stage) or {}).get("artifacts", {}):
            raise AtalaiaError(f"stage '{stage}' of run '{self.root}' has no {name} (made by an older AtalaIA?): "
                               "re-run the stage with `atalaia run --force`")
        return d / name

    def has(self, stage: str, name: str) -> bool:
        return name in ((self.marker(stage) or {}).get("artifacts") or {})

    def metrics(self, stage: str) -> dict[str, Any]:
        return json.loads(self.path(stage, METRICS).read_text())

    def outcome(self, stage: str) -> StageOutcome:
        data = self.metrics(stage)
        return StageOutcome(StageResult.from_dict(data["result"]), data.get("extra", {}),
                            float(data.get("seconds", 0.0)))

    def model(self, stage: str) -> Any:
        """The stage's float Keras model (`model.keras`), verified."""
        import keras

        return keras.saving.load_model(self.path(stage, "model.keras"), compile=False)


class StagedRun:
    """Runs stages into a run folder: each one once per key, resumable, its outputs checksummed."""

    def __init__(self, out_dir: str | Path, *, force: bool = False, log: Callable[[str], None] = print) -> None:
        self.folder = RunFolder(out_dir)
        self.out = self.folder.root
        self.force = force
        self.log = log
        self.outcomes: dict[str, StageOutcome] = {}
        self.keys: dict[str, str] = {}
        self.ran: set[str] = set()  # stages run (not skipped) by this invocation

    def run_stage(self, stage: str, key: str, body: Callable[[Path], tuple[StageResult, dict]], *,
                  upstream_rerun: str | None = None) -> StageOutcome:
        """`body(stage_dir) -> (result, extra)` unless the stage already finished with this key, intact.

        `upstream_rerun` names a stage this one needs that was just re-run: its files are new (training is not
        bit-reproducible), so what this stage derived from the old ones is redone too."""
        self.keys[stage] = key
        d = self.folder.stage_dir(stage)
        why = "--force" if self.force else self.folder.problem(stage, key)
        if why is None and upstream_rerun is not None:
            why = f"'{upstream_rerun}' was re-run"
        if why is None:
            self.outcomes[stage] = self.folder.outcome(stage)
            self.log(f"[{stage}] already done (key {key}), skipped")
            return self.outcomes[stage]
        if d.exists():
            if why not in ("not finished", "its inputs changed", "--force"):
                self.log(f"[{stage}] re-running: {why}")
            shutil.rmtree(d)
        d.mkdir(parents=True)
        self.log(f"[{stage}] running")
        t0 = time.perf_counter()
        result, extra = body(d)
        seconds = time.perf_counter() - t0
        atomic_write_json(d / METRICS, {"result": result.to_dict(), "extra": extra, "seconds": seconds})
        write_marker(d, key)
        self.outcomes[stage] = StageOutcome(result, extra, seconds)
        self.ran.add(stage)
        return self.outcomes[stage]


__all__ = ["RunFolder", "StageOutcome", "StagedRun", "file_digest", "now_utc", "save_keras", "stage_key",
           "write_marker"]
