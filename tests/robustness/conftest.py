"""The robustness suite's kit (fixture `kit`): bad inputs made on the fly (no fixtures checked in), an
in-process CLI runner that stops before the pipeline (so a case costs milliseconds, not a TensorFlow import),
the one-line-error assertion, and a count of generated cases printed at the end of the session."""


from __future__ import annotations

import io
import struct
import sys
import traceback
import warnings
import zlib
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer.main

import atalaia.cli as cli


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_declaring(width: int, height: int, *, extra_chunks: bytes = b"", bit_depth: int = 8) -> bytes:
    """A tiny PNG whose header declares width x height grey pixels, with (almost) no pixel data behind it."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + extra_chunks
            + _chunk(b"IDAT", zlib.compress(b"\0" * 8)) + _chunk(b"IEND", b""))


def png_with_warning(width: int = 8, height: int = 8) -> bytes:
    """A valid grey PNG with an acTL chunk declaring 0 frames: Pillow opens it with a UserWarning
    ("Invalid APNG, will use default PNG image if possible")."""
    raw = b"".join(b"\0" + bytes([(x * 30 + y * 7) % 256 for x in range(width)]) for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"acTL", struct.pack(">II", 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))


@dataclass
class Outcome:
    code: int | str
    stdout: str
    stderr: str
    reached_pipeline: bool


_COMMAND = typer.main.get_command(cli.app)


def _cached_app() -> None:
    _COMMAND(prog_name="atalaia")


def invoke(*args: str) -> Outcome:
    """`atalaia ARGS` in this process. `run` stops where the pipeline (TensorFlow) would start."""
    reached: list[bool] = []
    saved_run, saved_argv, saved_app, saved_show = cli._run_pipeline, sys.argv, cli.app, warnings.showwarning
    cli._run_pipeline = lambda *a, **k: reached.append(True)
    cli.app = _cached_app  # main() as it is, without typer rebuilding the command per call (0.1 s)
    out, err = io.StringIO(), io.StringIO()
    sys.argv = ["atalaia", *args]
    code: int | str
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                cli.main()
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Exception:  # noqa: BLE001 - a crash is what the tests look for
        code = "crash"
        err.write(traceback.format_exc())
    finally:
        cli._run_pipeline, sys.argv, cli.app, warnings.showwarning = saved_run, saved_argv, saved_app, saved_show
    return Outcome(code, out.getvalue(), err.getvalue(), bool(reached))


def assert_one_line_error(o: Outcome, *needles: str, out_dir: Path | None = None) -> str:
    """Exit 2, exactly one line on stderr starting with 'error:', no traceback, pipeline not started, and
    no output folder left behind."""
    assert o.code == 2, (o.code, o.stderr, o.stdout)
    assert "Traceback" not in o.stderr + o.stdout, o.stderr
    lines = o.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), o.stderr
    assert not o.reached_pipeline
    if out_dir is not None:
        assert not out_dir.exists(), f"{out_dir} was left behind"
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


CASES = {"n": 0, "refused": 0}


def count(k: int = 1, refused: int | None = None) -> None:
    """`k` generated cases, of which `refused` (default: all) were bad input refused with one line."""
    CASES["n"] += k
    CASES["refused"] += k if refused is None else refused


@pytest.fixture(scope="session")
def kit() -> SimpleNamespace:
    return SimpleNamespace(png_declaring=png_declaring, png_with_warning=png_with_warning, invoke=invoke,
                           assert_one_line_error=assert_one_line_error, count=count)


def pytest_terminal_summary(terminalreporter):
    if CASES["n"]:
        terminalreporter.write_line(f"robustness: {CASES['n']} generated cases checked, {CASES['refused']} of "
                                    "them refused as bad input (one line, exit 2, nothing left behind)")
