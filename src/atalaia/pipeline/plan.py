"""A task plan: the stages a task runs, what each consumes, and how they are executed.

Adding a task means writing a `Plan` subclass (one module under `atalaia/pipeline/`): `prepare` loads the data,
`stages` declares the stages in order, `report` builds the typed `Report`. The engine (`execute`) does the rest:
stage keys, skip/resume, integrity, progress lines, timings.

A stage's key is derived from what it declares, never from an exclusion list:
`stage_key(name, version, keys of the stages it needs, everything it consumes)`, where a consumed dataclass
config enters as `asdict(config)`. Change a field of a config a stage consumes and that stage and every stage
that needs it re-run; change anything else and they are reused.
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atalaia.config import Recipe, dump_recipe
from atalaia.errors import RecipeError
from atalaia.evaluate.result import StageResult
from atalaia.ioutil import atomic_write_text
from atalaia.pipeline.runfolder import StagedRun, StageOutcome, stage_key
from atalaia.report.schema import Report

Progress = Callable[[str, int], Callable[[int], None] | None]


def no_progress(desc: str, total: int) -> None:
    return None


@dataclass(frozen=True)
class Stage:
    """One stage of a plan.

    body(stage_dir) -> (row, extra) does the work and writes the stage's files into stage_dir.
    needs: upstream stages (their keys enter this stage's key). consumes: config objects and data keys.
    present: derives the reported outcome from the stored one for settings that change only how a finished
    stage is scored, not what it produced (e.g. mirror TTA: both modes are stored, the recipe picks one);
    it never rewrites the stage's files.
    """

    name: str
    body: Callable[[Path], tuple[StageResult, dict]]
    consumes: tuple[Any, ...] = ()
    needs: tuple[str, ...] = ()
    version: str = "1"
    present: Callable[[StageOutcome], StageOutcome] | None = None


def plain(x: Any) -> Any:
    """A consumed object as JSON-able data: dataclasses by value, tuples as lists."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return plain(dataclasses.asdict(x))
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return x


def key_of(stage: Stage, keys: dict[str, str]) -> str:
    return stage_key(stage.name, stage.version, [keys[n] for n in stage.needs], plain(stage.consumes))


class Plan(ABC):
    """Base of the task plans. Subclasses set `task` and implement prepare / stages / report."""

    task: str = ""

    def __init__(self, recipe: Recipe, run: StagedRun, *, progress: Progress = no_progress) -> None:
        if recipe.task != self.task:
            raise RecipeError(f"{type(self).__name__} runs 'task: {self.task}' recipes; this one has task "
                              f"'{recipe.task}'")
        self.recipe = recipe
        self.run = run
        self.progress = progress
        self.log = run.log

    @property
    def out(self) -> Path:
        return self.run.out

    def outcome(self, stage: str) -> StageOutcome:
        return self.run.outcomes[stage]

    def row(self, stage: str) -> StageResult:
        return self.run.outcomes[stage].result

    @abstractmethod
    def prepare(self) -> None:
        """Load and check the data (sets whatever the stages consume)."""

    @abstractmethod
    def stages(self) -> list[Stage]:
        """The stages to run, in order (disabled ones left out)."""

    @abstractmethod
    def report(self, seconds: float) -> Report:
        """The typed report of the finished stages."""

    def done_message(self, stage: str, outcome: StageOutcome) -> str:
        r = outcome.result
        return (f"[{stage}] done in {outcome.seconds:.1f} s: accuracy {100 * r.accuracy:.1f}%, "
                f"flash {r.flash_bytes / 1024:.1f} KB")


def execute(plan: Plan) -> Report:
    """Run every stage of the plan (skipping intact finished ones), then build and return its report."""
    t0 = time.perf_counter()
    plan.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(plan.out / "recipe.yaml", dump_recipe(plan.recipe))
    plan.prepare()
    for stage in plan.stages():
        rerun = next((n for n in stage.needs if n in plan.run.ran), None)
        outcome = plan.run.run_stage(stage.name, key_of(stage, plan.run.keys), stage.body, upstream_rerun=rerun)
        if stage.present is not None:
            outcome = plan.run.outcomes[stage.name] = stage.present(outcome)
        if stage.name in plan.run.ran:
            plan.log(plan.done_message(stage.name, outcome))
    return plan.report(time.perf_counter() - t0)


__all__ = ["Plan", "Progress", "Stage", "execute", "key_of", "no_progress", "plain"]
