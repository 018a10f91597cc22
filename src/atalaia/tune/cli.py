"""`atalaia tune`: a ready-to-register typer command (and a standalone worker entry point).

Wiring into `atalaia.cli` (one line after the other commands):

    from atalaia.tune.cli import tune_command
    app.command(name="tune")(tune_command)

Standalone (what distributed workers and the PostgreSQL test run): `python -m atalaia.tune.cli ...`
or `python -m atalaia.tune ...` — same options, same one-line errors.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import typer  # noqa: E402

from atalaia.errors import AtalaiaError  # noqa: E402


def tune_command(
    recipe: Annotated[Path | None, typer.Argument(help="Recipe YAML (default: the bundled default recipe).")] = None,
    trials: Annotated[int, typer.Option("--trials", "-n",
                                        help="Total finished trials the study should have (resume-safe).")] = 20,
    study: Annotated[str | None, typer.Option("--study", help="Study name (default: <recipe>-accuracy or "
                                                              "<recipe>-pareto).")] = None,
    storage: Annotated[str | None, typer.Option("--storage", help="Optuna storage URL, e.g. "
                                                "postgresql+psycopg2://user:pw@host/db (default: SQLite file "
                                                "in RUN/tune/study.db).")] = None,
    sampler: Annotated[str, typer.Option("--sampler", help="tpe | gp | random | grid (grid = the thesis' "
                                                           "alpha x T grid).")] = "tpe",
    pruner: Annotated[str, typer.Option("--pruner", help="median | hyperband | none (single-objective "
                                                         "only).")] = "median",
    multi_objective: Annotated[bool, typer.Option("--multi-objective/--single-objective",
                                                  help="Also minimise int8 flash and est. latency on the "
                                                       "recipe's first target (Pareto front).")] = False,
    tune_lr: Annotated[bool, typer.Option("--tune-lr", help="Also search the learning rate.")] = False,
    tune_width: Annotated[bool, typer.Option("--tune-width", help="Also search the student width.")] = False,
    tune_prune: Annotated[bool, typer.Option("--tune-prune", help="Also search the channel-pruning "
                                                                  "ratio.")] = False,
    thesis_grid: Annotated[bool, typer.Option("--thesis-grid", help="Search the thesis' discrete alpha x T "
                                                                    "grid (implied by --sampler grid).")] = False,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Epochs per trial (default: "
                                                                "train.epochs).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Sampler seed (leave unset for distributed "
                                                            "workers).")] = None,
    heartbeat_grace: Annotated[int, typer.Option("--heartbeat-grace", help="Seconds without heartbeat after "
                                                 "which a worker's RUNNING trial is failed and retried.")] = 120,
    out: Annotated[Path | None, typer.Option("--out", help="Run folder (default: runs/<recipe name>).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe value: KEY=VALUE.")] = None,
) -> None:
    """Bayesian optimisation of KD alpha/T (and optional lr, width, pruning ratio) on the VALIDATION split."""
    from atalaia.config import load_recipe, parse_overrides
    from atalaia.tune import SearchSpace, tune

    r = load_recipe(recipe, parse_overrides(set_))
    base = SearchSpace.thesis() if (thesis_grid or sampler == "grid") else SearchSpace()
    space = SearchSpace.with_knobs(learning_rate=tune_lr, width=tune_width, prune=tune_prune, base=base)
    out_dir = out or Path("runs") / r.name
    res = tune(r, trials=trials, study_name=study, storage=storage, sampler=sampler, pruner=pruner,
               multi_objective=multi_objective, out_dir=out_dir, search_space=space, epochs=epochs, seed=seed,
               heartbeat_grace_s=heartbeat_grace, log=lambda m: print(m, flush=True))
    c = res.counts()
    print(f"study '{res.study_name}': " + ", ".join(f"{k.lower()} {v}" for k, v in sorted(c.items())), flush=True)
    if res.best:
        params = ", ".join(f"{k}={v:.4g}" for k, v in res.best["params"].items())
        print(f"best trial {res.best['number']}: val accuracy {100 * res.best['values'][0]:.2f}% ({params})",
              flush=True)
    print(f"report: {out_dir / 'tune' / 'report.md'}", flush=True)


def main(argv: list[str] | None = None) -> None:
    """Standalone entry: one-line `error: ...` and exit 2 on a user mistake, like `atalaia`."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(tune_command)
    try:
        app(args=argv, standalone_mode=True)
    except AtalaiaError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; finished trials are kept in the study, run again to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
