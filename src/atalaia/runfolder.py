"""`StagedRun`: the resumable run-folder machinery both pipelines share.

Each stage writes into `<out>/<stage>/`, and its `DONE.json` (holding the stage key) is written last by atomic
rename. A stage whose marker holds the same key is skipped and its `metrics.json` reloaded; a folder without
a matching marker is a stage that was interrupted (or whose inputs changed) and is started again from scratch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from atalaia.evaluate.result import StageResult
from atalaia.ioutil import atomic_write_json


def stage_key(*parts: Any) -> str:
    """Cache key of a stage: a hash of everything it depends on (recipe sections, upstream keys, data)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_keras(model: Any, path: Path) -> None:
    """`model.save` to a temp name then rename: a killed run never leaves a half-written model."""
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    model.save(tmp)
    os.replace(tmp, path)


def now_utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class StagedRun:
    """Base of `Pipeline` and `FacePipeline`: stage results, extras, keys and timings, resume by key."""

    def __init__(self, out_dir: str | Path, *, force: bool = False, log: Callable[[str], None] = print,
                 make_progress: Callable[[str, int], Callable[[int], None] | None] | None = None):
        self.out = Path(out_dir)
        self.force = force
        self.log = log
        self.make_progress = make_progress or (lambda desc, total: None)
        self.results: dict[str, StageResult] = {}
        self.extras: dict[str, dict] = {}
        self.keys: dict[str, str] = {}
        self.timings: dict[str, float] = {}
        self._models: dict[str, Any] = {}

    def _stage_dir(self, stage: str) -> Path:
        return self.out / stage

    def _is_done(self, stage: str, key: str) -> bool:
        marker = self._stage_dir(stage) / "DONE.json"
        if self.force or not marker.is_file():
            return False
        try:
            return json.loads(marker.read_text()).get("key") == key
        except (OSError, ValueError):
            return False

    def _done_message(self, stage: str, result: StageResult, extra: dict, seconds: float) -> str:
        return (f"[{stage}] done in {seconds:.1f} s: accuracy {100 * result.accuracy:.1f}%, "
                f"flash {result.flash_bytes / 1024:.1f} KB")

    def _run_stage(self, stage: str, key: str, fn: Callable[[Path], tuple[StageResult, dict]]) -> None:
        """Run `fn(stage_dir) -> (result, extra)` unless the stage already finished with this key."""
        self.keys[stage] = key
        d = self._stage_dir(stage)
        if self._is_done(stage, key):
            data = json.loads((d / "metrics.json").read_text())
            self.results[stage] = StageResult.from_dict(data["result"])
            self.extras[stage] = data.get("extra", {})
            self.timings[stage] = float(data.get("seconds", 0.0))
            self.log(f"[{stage}] already done (key {key}), skipped")
            return
        if d.exists():
            shutil.rmtree(d)  # a half-finished stage from a killed run: start it again
        d.mkdir(parents=True)
        self.log(f"[{stage}] running")
        t0 = time.perf_counter()
        result, extra = fn(d)
        seconds = time.perf_counter() - t0
        atomic_write_json(d / "metrics.json", {"result": result.to_dict(), "extra": extra, "seconds": seconds})
        atomic_write_json(d / "DONE.json", {"key": key, "finished": now_utc()})
        self.results[stage], self.extras[stage], self.timings[stage] = result, extra, seconds
        self.log(self._done_message(stage, result, extra, seconds))

    def model(self, stage: str):
        """The stage's float Keras model (`<stage>/model.keras`), loaded once."""
        if stage not in self._models:
            import keras

            self._models[stage] = keras.saving.load_model(self._stage_dir(stage) / "model.keras", compile=False)
        return self._models[stage]
