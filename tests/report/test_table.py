"""Console tables at 80 columns: no line wider, no number wrapped or cut, hidden columns named, no "None"."""

from __future__ import annotations

import io
import re

from rich.console import Console

from atalaia.report.table import DASH, Col, cell, fit_columns, print_table

COLS = [Col("target"), Col("model"), Col("MACs", priority=2, justify="right"), Col("published ms"),
        Col("leave-one-out error"), Col("single-rate error", priority=3),
        Col("source", text=True, priority=5, min_width=20)]
ROWS = [["esp32s3", "person_detect", f"{7157888:,}", "54.0", cell(None, "+.1%"), cell(0.1398, "+.1%"),
         "esp-tflite-micro README (person_detection invoke() time, internal RAM, with esp-nn)"],
        ["cortex-m4", "resnet8", f"{12501632:,}", "704.0", cell(0.4229, "+.1%"), cell(-0.00001, "+.1%"),
         "MLPerf Tiny v0.5 inference results, reference submission (TFLM) on STM32 L4R5ZI"]]


def _render(width: int, wide: bool = False) -> tuple[str, list[str]]:
    buf = io.StringIO()
    hidden = print_table(Console(file=buf, width=width), "t", COLS, ROWS, width=width, wide=wide)
    return buf.getvalue(), hidden


def test_fits_80_columns_and_names_what_it_hides():
    text, hidden = _render(80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert hidden == ["single-rate error", "source"]  # highest priority numbers go first
    assert "not shown at 80 columns: single-rate error, source; --wide" in text
    for number in ("7,157,888", "12,501,632", "704.0", "+42.3%"):
        assert number in text  # whole, on one line
    assert "…" not in text and "None" not in text and DASH in text


def test_wide_keeps_every_column_and_wider_terminals_show_more():
    text, hidden = _render(80, wide=True)
    assert hidden == [] and "0.0%" in text and "esp-tflite-micro README (person_detection invoke() time" in text
    text120, hidden120 = _render(120)
    assert len(hidden120) < 2 and max(len(line) for line in text120.splitlines()) <= 120


def test_priority_zero_columns_are_never_dropped():
    keep = fit_columns(COLS, [[c for c in r] for r in ROWS], 10)
    assert [COLS[i].title for i in keep] == ["target", "model", "published ms", "leave-one-out error"]


def test_cell_never_prints_none_nan_or_negative_zero():
    assert cell(None) == DASH and cell(float("nan"), ".1f") == DASH and cell(float("inf")) == DASH
    assert cell(-0.00001, "+.1%") == "0.0%" and cell(0.1398, "+.1%") == "+14.0%" and cell(7157888, ",") == "7,157,888"


def test_targets_command_reads_at_80_columns(monkeypatch, capsys):
    import atalaia.cli as cli

    monkeypatch.setenv("COLUMNS", "80")
    cli.targets(wide=False)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert len(lines) < 90  # was 276 lines (before the Cortex-M parts and instruction-calibration tables: 45)
    assert "None" not in out and "…" not in out
    assert re.search(r"\b7,157,888\b", out) and re.search(r"\b12,501,632\b", out)
    assert "description" in out and "NOT TFLM" in out  # the hidden description comes as a list below
    cli.targets(wide=True)
    wide = capsys.readouterr().out
    assert "single-rate error" in wide and "MLPerf Tiny" in wide
