"""The run engine with fake, millisecond stages: resume after a crash at each point, exactly the consumers of a
changed config re-run, a raising stage leaves no DONE marker, a damaged artifact is noticed and re-run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from atalaia.config import DistillConfig, QuantizeConfig, Recipe
from atalaia.errors import AtalaiaError
from atalaia.evaluate.result import StageResult
from atalaia.ioutil import atomic_write_bytes
from atalaia.pipeline.plan import Plan, Stage, execute
from atalaia.pipeline.runfolder import RunFolder, StagedRun
from atalaia.report.schema import Report


class Crash(Exception):
    pass


class FakePlan(Plan):
    """a -> b -> c, where a consumes `distill`, c consumes `quantize`; each writes one artifact."""

    task = "classification"
    crash_in: str | None = None

    def prepare(self) -> None:
        self.calls: list[str] = []

    def _body(self, name: str):
        def body(d: Path):
            self.calls.append(name)
            atomic_write_bytes(d / "model.bin", f"{name}-{self.recipe.distill.alpha}".encode())
            if self.crash_in == name:
                raise Crash(name)
            row = StageResult(stage=name, model="fake", dtype="float32", params=1, macs=1, flash_bytes=3,
                              accuracy=0.5, macro_f1=0.5)
            return row, {"n": len(self.calls)}
        return body

    def stages(self) -> list[Stage]:
        r = self.recipe
        return [Stage("a", self._body("a"), (r.distill,)), Stage("b", self._body("b"), needs=("a",)),
                Stage("c", self._body("c"), (r.quantize,), needs=("b",))]

    def report(self, seconds: float) -> Report:
        return Report(task=self.task, recipe_name=self.recipe.name,
                      stages=tuple(o.result for o in self.run.outcomes.values()))


def _run(tmp_path: Path, recipe: Recipe | None = None, crash_in: str | None = None) -> tuple[FakePlan, list[str]]:
    logs: list[str] = []
    plan = FakePlan(recipe or Recipe(), StagedRun(tmp_path / "run", log=logs.append))
    plan.crash_in = crash_in
    try:
        execute(plan)
    except Crash:
        pass
    return plan, logs


def test_fresh_run_then_everything_skipped(tmp_path):
    plan, _ = _run(tmp_path)
    assert plan.calls == ["a", "b", "c"]
    plan, logs = _run(tmp_path)
    assert plan.calls == [] and sum("skipped" in m for m in logs) == 3
    marker = json.loads((tmp_path / "run" / "c" / "DONE.json").read_text())
    assert set(marker["artifacts"]) == {"model.bin", "metrics.json"} and len(marker["artifacts"]["model.bin"]["sha256"]) == 64


@pytest.mark.parametrize("crash_in,redone", [("a", ["a", "b", "c"]), ("b", ["b", "c"]), ("c", ["c"])])
def test_crash_at_each_stage_leaves_no_marker_and_resumes_there(tmp_path, crash_in, redone):
    plan, _ = _run(tmp_path, crash_in=crash_in)
    assert not (tmp_path / "run" / crash_in / "DONE.json").exists()
    assert (tmp_path / "run" / crash_in / "model.bin").exists()  # half-done work is there, but not trusted
    assert not RunFolder(tmp_path / "run").finished(crash_in)
    plan, _ = _run(tmp_path)
    assert plan.calls == redone


def test_changing_one_config_reruns_exactly_its_consumers(tmp_path):
    _run(tmp_path)
    r = Recipe()
    plan, _ = _run(tmp_path, dataclasses.replace(r, quantize=QuantizeConfig(representative_samples=7)))
    assert plan.calls == ["c"]
    plan, _ = _run(tmp_path, dataclasses.replace(r, distill=DistillConfig(alpha=0.3)))
    assert plan.calls == ["a", "b", "c"]  # b needs a: its key holds a's key
    plan, _ = _run(tmp_path, dataclasses.replace(r, distill=DistillConfig(alpha=0.3), seed=7))
    assert plan.calls == []  # nothing consumes the seed here


def test_damaged_artifact_is_noticed_and_its_stage_rerun(tmp_path):
    _run(tmp_path)
    (tmp_path / "run" / "b" / "model.bin").write_bytes(b"x")
    rf = RunFolder(tmp_path / "run")
    assert "bytes" in rf.problem("b") and rf.finished("a")
    with pytest.raises(AtalaiaError, match="stage 'b'.*not usable"):
        rf.path("b", "model.bin")
    plan, logs = _run(tmp_path)
    assert plan.calls == ["b", "c"]
    assert any(m.startswith("[b] re-running:") and "model.bin" in m for m in logs)
    # same size, other content: the hash catches it
    p = tmp_path / "run" / "c" / "model.bin"
    p.write_bytes(bytes(len(p.read_bytes())))
    plan, _ = _run(tmp_path)
    assert plan.calls == ["c"]


def test_marker_without_checksums_is_not_trusted(tmp_path):
    _run(tmp_path)
    m = tmp_path / "run" / "a" / "DONE.json"
    m.write_text(json.dumps({"key": json.loads(m.read_text())["key"]}))
    assert "older AtalaIA" in RunFolder(tmp_path / "run").problem("a")
    plan, _ = _run(tmp_path)
    assert plan.calls == ["a", "b", "c"]


def test_plan_refuses_a_recipe_of_another_task(tmp_path):
    from atalaia.errors import RecipeError

    with pytest.raises(RecipeError, match="task: classification"):
        FakePlan(Recipe(task="verification"), StagedRun(tmp_path))
