"""Optuna storages: the default SQLite file in the run folder, PostgreSQL for many workers, heartbeats."""

from __future__ import annotations

import re
import time
import warnings
from pathlib import Path
from typing import Any

from atalaia.config import Recipe
from atalaia.tune.space import TuneError


# ---------------------------------------------------------------------------------------------- storage
def default_storage(out_dir: str | Path) -> str:
    """The default study storage: a SQLite file in the run folder's `tune/`."""
    return f"sqlite:///{(Path(out_dir) / 'tune' / 'study.db').resolve()}"


def default_study_name(recipe: Recipe, multi_objective: bool = False) -> str:
    return f"{recipe.name}-{'pareto' if multi_objective else 'accuracy'}"


def _redact(url: str) -> str:
    return re.sub(r"://([^:/@]+):([^@]+)@", r"://\1:***@", url)


def _resolve_storage(storage: str | Path | None, out_dir: str | Path | None) -> str:
    """A URL stays a URL; a folder (run folder or its tune/) or a .db file becomes a SQLite URL."""
    if storage is None:
        if out_dir is None:
            raise TuneError("no storage: give a storage URL or a run folder")
        return default_storage(out_dir)
    s = str(storage)
    if "://" in s:
        return s
    p = Path(s)
    if p.suffix == ".db":
        return f"sqlite:///{p.resolve()}"
    for cand in (p / "study.db", p / "tune" / "study.db"):
        if cand.is_file():
            return f"sqlite:///{cand.resolve()}"
    raise TuneError(f"no study database under '{s}' (looked for study.db and tune/study.db); "
                    f"run `atalaia tune` first or pass a storage URL")


def _retry_callback():
    """Re-queue a trial whose worker died, once, with the same parameters (optuna's stale-trial retry)."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback(max_retry=1)


def _open_storage(url: str, *, heartbeat: bool = True, grace_period: int = 120):
    """An optuna RDBStorage with heartbeat + one retry of trials whose worker died; one-line errors."""
    import optuna
    import sqlalchemy.exc
    from optuna.storages import RDBStorage

    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    kw: dict[str, Any] = {}
    if heartbeat:
        kw = {"heartbeat_interval": max(1, grace_period // 4), "grace_period": grace_period,
              "heartbeat_stale_trial_callback": _retry_callback()}
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        for attempt in range(6):
            try:
                with warnings.catch_warnings():  # heartbeat is "experimental" in optuna since 2.9; we rely on it
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return RDBStorage(url, engine_kwargs=engine_kwargs, **kw)
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
                # workers starting together on an empty database race to create optuna's schema: the loser
                # sees "duplicate key"/"already exists"; once the winner has committed, opening just works
                if attempt == 5:
                    raise
                time.sleep(0.5 + attempt)
        raise AssertionError("unreachable")
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.ArgumentError, ModuleNotFoundError,
            sqlalchemy.exc.NoSuchModuleError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TuneError(f"cannot open study storage {_redact(url)}: {first[:200]}") from None
    except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.DatabaseError) as e:
        raise TuneError(f"cannot open study storage {_redact(url)}: {str(e).splitlines()[0][:200]}") from None
