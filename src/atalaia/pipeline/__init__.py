"""The run engine and the task plans on top of it.

- `runfolder`: the staged run folder (keys, atomic saves, checksummed DONE markers, resume) and `RunFolder`,
  the read-only view every reader of a run uses.
- `plan`: `Stage`, `Plan` and `execute`; `stages`: stage bodies shared by all tasks (int8 + TFLM check, rows).
- one module per task plan: `classification` (closed-set identities), `verification` (face embeddings, LFW).

Layer rule (tested): `data`, `models`, `compress`, `deploy`, `evaluate`, `report` and the face building blocks never
import `atalaia.pipeline` or `atalaia.tune`; `atalaia.tune` sits above the pipeline, never below it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from atalaia.config import Recipe
from atalaia.errors import RecipeError
from atalaia.pipeline.classification import ClassificationPlan
from atalaia.pipeline.detection import DetectionPlan
from atalaia.pipeline.plan import Plan, Progress, Stage, execute, no_progress
from atalaia.pipeline.runfolder import RunFolder, StagedRun, StageOutcome, stage_key
from atalaia.pipeline.verification import VerificationPlan
from atalaia.report import write_report
from atalaia.report.schema import Report

PLANS: dict[str, type[Plan]] = {"classification": ClassificationPlan, "verification": VerificationPlan,
                               "detection": DetectionPlan}


def make_plan(recipe: Recipe, out_dir: str | Path, *, force: bool = False, log: Callable[[str], None] = print,
              progress: Progress = no_progress) -> Plan:
    """The plan for the recipe's task, bound to a run folder."""
    if recipe.task not in PLANS:
        raise RecipeError(f"task must be one of {', '.join(PLANS)}, got '{recipe.task}'")
    return PLANS[recipe.task](recipe, StagedRun(out_dir, force=force, log=log), progress=progress)


def run_recipe(recipe: Recipe, out_dir: str | Path, *, force: bool = False, log: Callable[[str], None] = print,
               progress: Progress = no_progress) -> Report:
    """Run a recipe end to end into `out_dir` (resuming finished stages) and write its report files."""
    report = execute(make_plan(recipe, out_dir, force=force, log=log, progress=progress))
    write_report(report, Path(out_dir))
    return report


__all__ = ["PLANS", "Plan", "Progress", "Report", "RunFolder", "Stage", "StageOutcome", "StagedRun", "execute",
           "make_plan", "no_progress", "run_recipe", "stage_key"]
