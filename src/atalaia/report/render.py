"""Render a run's report dict as JSON + Markdown + self-contained HTML + PNG plots, and as a rich console table.

Every number shown in Markdown, HTML and on the console goes through one function, `fmt(value, kind)`, applied
to the values of the report dict; the three views therefore cannot disagree with `report.json` or with each
other. The document itself is built once as a list of blocks (`_document`) and then written as Markdown and
as HTML, so both carry the same sections, statements and tables.

Units: accuracy-like values in the report dict are fractions in [0, 1] (shown as %), differences of them are
shown in percentage points (pp); `int8.accuracy_drop_pp` is already in pp; sizes are bytes (shown in KB, where
KB = 1024 bytes); latencies are ms.

    >>> paths = write_report(report, Path("runs/default"))   # doctest: +SKIP
    >>> paths["html"]                                          # doctest: +SKIP
    PosixPath('runs/default/report.html')
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atalaia.ioutil import atomic_write_bytes, atomic_write_json, atomic_write_text
from atalaia.report.schema import Report
from atalaia.report.table import Col, print_table

__all__ = [
    "write_report",
    "console_table",
    "print_summary",
    "stage_table",
    "summary_lines",
    "statements",
    "fmt",
    "target_label",
    "DASH",
    "PLOT_NAMES",
]

#: Console columns kept first when the terminal is narrow (0 = always); estimated latencies default to 1.
_PRIORITY = {"stage": 0, "flash": 0, "arena": 0, "accuracy": 0, "MACs": 1, "params": 2, "dtype": 2,
             "macro-F1": 2, "model": 3, "host latency": 3}

#: Shown for a value that does not exist (None, NaN) or does not apply (arena of a float row).
DASH = "—"

#: Plots `write_report` may write, in `out_dir/plots/<name>.png`.
PLOT_NAMES = ("accuracy_vs_flash", "stage_costs", "confusion_matrix", "training_curves")

DEFAULT_KD_CONVENTION = "loss = alpha*CE + (1-alpha)*T^2*KL(p_t^T || p_s^T)"

STATEMENT_FLASH = (
    "Flash = bytes of the .tflite file as flashed (float32 model for float stages, int8 model for the int8 "
    "stage); never a gzip size. KB = 1024 bytes."
)
STATEMENT_SPARSITY = (
    "Unstructured (magnitude) sparsity does not shrink a TFLM model: TFLM has no sparse kernels, so a zero "
    "weight costs flash, arena and time like any other. Only structured channel pruning reduces flash, arena "
    "and MACs; gzip sizes are shown for reference only and are not what is flashed."
)
STATEMENT_LATENCY = (
    "MCU latencies are estimates, labelled \"est.\": a MACs-based cost model calibrated on published on-device "
    "timings, not measured on a board. Host latency is measured (LiteRT, 1 thread, median)."
)
STATEMENT_ARENA = "Arena = TFLM tensor arena measured in the TFLM runtime (int8 rows only; \"—\" elsewhere)."


# --------------------------------------------------------------------------------------------- formatting
def fmt(value: Any, kind: str) -> str:
    """The one formatter for every number in every view of the report.

    kinds: "text"; "int" (thousands separators); "kb" (bytes -> KB = 1024 B, 1 decimal); "ms" (3 decimals: host latencies of small models are ~0.1 ms);
    "est_ms" (1 decimal: estimates); "pct" (fraction -> %, 2 decimals); "pct1" (fraction -> %, 1 decimal);
    "dpp" (fraction difference -> signed pp, 2 decimals); "dpct1" (relative change -> signed %,
    1 decimal); "pp" (already pp -> signed, 2 decimals);
    "s" (seconds, 1 decimal); "num" (plain float, up to 4 significant digits); "bool" (yes/no).
    None and NaN become "—".
    """
    if value is None:
        return DASH
    if kind == "text":
        return str(value)
    if kind == "bool":
        return "yes" if bool(value) else "no"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        # A number is expected; show what is there rather than crash on a malformed value.
        try:
            value = float(value)
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return DASH
    if kind == "int":
        return f"{int(round(value)):,}"
    if kind == "kb":
        return f"{value / 1024:,.1f}"
    if kind == "ms":
        return f"{value:,.3f}"
    if kind == "est_ms":
        return f"{value:,.1f}"
    if kind == "pct":
        return f"{100 * value:.2f}"
    if kind == "pct1":
        return f"{100 * value:.1f}"
    if kind == "dpp":
        return f"{100 * value:+.2f}"
    if kind == "dpct1":
        return f"{100 * value:+.1f}"
    if kind == "pp":
        return f"{value:+.2f}"
    if kind == "s":
        return f"{value:,.1f}"
    if kind == "num":
        return f"{value:.4g}"
    if kind == "f4":
        return f"{value:.4f}"
    raise ValueError(f"unknown format kind {kind!r}")


def target_label(name: str) -> str:
    """Display name of a target: "esp32s3" -> "ESP32-S3", "esp32" -> "ESP32", "cortex-m4" -> "Cortex-M4"."""
    m = re.fullmatch(r"esp32-?([a-z]\d+)?", name.lower())
    if m:
        return "ESP32" + (f"-{m.group(1).upper()}" if m.group(1) else "")
    m = re.fullmatch(r"cortex-?(m\d+)", name.lower())
    if m:
        return f"Cortex-{m.group(1).upper()}"
    return name.upper()


# --------------------------------------------------------------------------------------------- stage table
@dataclass(frozen=True)
class _Col:
    header: str
    kind: str
    get: Callable[[dict[str, Any]], Any]

    @property
    def numeric(self) -> bool:
        return self.kind != "text"


def _targets(report: dict[str, Any]) -> list[str]:
    """report["targets"], or (if absent) every target with an estimate in some stage, in first-seen order."""
    targets = report.get("targets")
    if targets:
        return [str(t) for t in targets]
    seen: list[str] = []
    for s in _stages(report):
        for t in (s.get("est_latency_ms") or {}):
            if t not in seen:
                seen.append(t)
    return seen


def _stages(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in (report.get("stages") or []) if isinstance(s, dict)]


def _arena(s: dict[str, Any]) -> Any:
    return s.get("arena_bytes") if s.get("dtype") == "int8" else None


def _columns(report: dict[str, Any]) -> list[_Col]:
    cols = [
        _Col("stage", "text", lambda s: s.get("stage")),
        _Col("model", "text", lambda s: s.get("model")),
        _Col("dtype", "text", lambda s: s.get("dtype")),
        _Col("params", "int", lambda s: s.get("params")),
        _Col("MACs", "int", lambda s: s.get("macs")),
        _Col("flash (KB)", "kb", lambda s: s.get("flash_bytes")),
        _Col("arena (KB)", "kb", _arena),
        _Col("host latency (ms)", "ms", lambda s: s.get("host_latency_ms")),
    ]
    for t in _targets(report):
        cols.append(_Col(f"est. {target_label(t)} (ms)", "est_ms", lambda s, t=t: (s.get("est_latency_ms") or {}).get(t)))
    cols += [
        _Col("accuracy (%)", "pct", lambda s: s.get("accuracy")),
        _Col("macro-F1 (%)", "pct", lambda s: s.get("macro_f1")),
    ]
    return cols


def stage_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells of the stage table: one row per stage, one "est. <TARGET> (ms)" per target."""
    cols = _columns(report)
    rows = [[fmt(c.get(s), c.kind) for c in cols] for s in _stages(report)]
    return [c.header for c in cols], rows


# --------------------------------------------------------------------------------------------- summary text
def _stage(report: dict[str, Any], name: str) -> dict[str, Any] | None:
    for s in _stages(report):
        if s.get("stage") == name:
            return s
    return None


def _diff(a: Any, b: Any) -> float | None:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) - float(b)
    return None


def _rel_change(before: Any, after: Any) -> str:
    if _is_num(before) and _is_num(after) and before:
        return f" ({fmt((after - before) / before, 'dpct1')}%)"
    return ""


def _reference_for_pruning(report: dict[str, Any]) -> dict[str, Any] | None:
    return _stage(report, "distilled") or _stage(report, "baseline")


def _acc_cost(report: dict[str, Any], stage_name: str) -> str:
    s, ref = _stage(report, stage_name), _reference_for_pruning(report)
    if s is None or ref is None:
        return ""
    d_acc, d_f1 = _diff(s.get("accuracy"), ref.get("accuracy")), _diff(s.get("macro_f1"), ref.get("macro_f1"))
    if d_acc is None and d_f1 is None:
        return ""
    return (
        f"; accuracy {fmt(d_acc, 'dpp')} pp, macro-F1 {fmt(d_f1, 'dpp')} pp "
        f"({stage_name} − {ref.get('stage')})"
    )


def _paired(delta: Any) -> str:
    """"; 95% paired interval [-6.25, +1.25] pp: not significant; McNemar p = 0.29" for a stage - parent delta."""
    if not isinstance(delta, dict) or not isinstance(delta.get("accuracy"), dict):
        return ""
    a = delta["accuracy"]
    d, p = a.get("diff") or {}, a.get("p_value")
    # the verdict is the interval's (it excludes 0 or not); McNemar's exact p is shown beside it, and the two
    # can disagree near the edge, so the text says which one decides
    verdict = "significant (interval excludes 0)" if a.get("significant") else "not significant"
    return (f"; 95% paired interval [{fmt(d.get('low'), 'dpp')}, {fmt(d.get('high'), 'dpp')}] pp: {verdict}; "
            f"McNemar p = {p:.2g}" if p is not None else "")


def _interval_lines(iv: Any) -> list[str]:
    """Every stage's accuracy with its 95% interval, and every stage - parent difference with its paired one."""
    if not isinstance(iv, dict) or not iv.get("stages"):
        return []
    def pct(i: dict) -> str:
        return f"{fmt(i.get('value'), 'pct')} [{fmt(i.get('low'), 'pct')}, {fmt(i.get('high'), 'pct')}]"
    acc = ", ".join(f"{s} {pct(v['accuracy'])}" for s, v in iv["stages"].items())
    lines = [f"Accuracy with 95% intervals ({iv.get('methods', {}).get('accuracy', 'Wilson')}, "
             f"{iv.get('n_test')} test images): {acc}."]
    for name, delta in (iv.get("deltas") or {}).items():
        a = delta.get("accuracy") or {}
        d = a.get("diff") or {}
        lines.append(f"{name}: accuracy {fmt(d.get('value'), 'dpp')} pp" + _paired(delta) + ".")
    return lines


def summary_lines(report: dict[str, Any]) -> list[str]:
    """Plain-text findings (KD gain, pruning costs, int8 drop, TFLM check, fits), whatever their sign.

    Sections absent from the report are skipped. The same lines appear in Markdown, HTML and on the console.
    """
    lines: list[str] = []
    kd = report.get("kd")
    if isinstance(kd, dict):
        gain = f"KD gain (distilled − baseline): accuracy {fmt(kd.get('gain_accuracy'), 'dpp')} pp, " \
               f"macro-F1 {fmt(kd.get('gain_macro_f1'), 'dpp')} pp"
        hp = []
        if kd.get("alpha") is not None:
            hp.append(f"alpha = {fmt(kd.get('alpha'), 'num')}")
        if kd.get("temperature") is not None:
            hp.append(f"T = {fmt(kd.get('temperature'), 'num')}")
        lines.append(gain + (f" ({', '.join(hp)})" if hp else "") + _paired(kd.get("gain_interval")) + ".")
    lines += _interval_lines(report.get("intervals"))

    mp = report.get("magnitude_pruning")
    if isinstance(mp, dict):
        line = (
            f"Magnitude pruning: sparsity {fmt(mp.get('achieved_sparsity'), 'pct1')}% achieved "
            f"(target {fmt(mp.get('target_sparsity'), 'pct1')}%); flash {fmt(mp.get('flash_bytes'), 'kb')} KB "
            f"as flashed vs {fmt(mp.get('dense_flash_bytes'), 'kb')} KB dense (no TFLM saving)"
        )
        if mp.get("gzip_bytes") is not None:
            line += f"; gzip {fmt(mp.get('gzip_bytes'), 'kb')} KB, for reference only, not flashed"
        line += _acc_cost(report, "pruned_magnitude") + "."
        if mp.get("note"):
            line += f" {mp['note']}"
        lines.append(line)

    cp = report.get("channel_pruning")
    if isinstance(cp, dict):
        how = ", ".join(
            x for x in (
                f"criterion {cp['criterion']}" if cp.get("criterion") else "",
                f"ratio {fmt(cp.get('ratio'), 'num')}" if cp.get("ratio") is not None else "",
            ) if x
        )
        parts = []
        for label, kind, b, a in (
            ("params", "int", "params_before", "params_after"),
            ("MACs", "int", "macs_before", "macs_after"),
            ("flash", "kb", "flash_before", "flash_after"),
        ):
            if cp.get(b) is None and cp.get(a) is None:
                continue
            unit = " KB" if kind == "kb" else ""
            parts.append(
                f"{label} {fmt(cp.get(b), kind)}{unit} → {fmt(cp.get(a), kind)}{unit}{_rel_change(cp.get(b), cp.get(a))}"
            )
        lines.append(
            "Channel pruning" + (f" ({how})" if how else "") + ": " + ("; ".join(parts) or "no sizes recorded")
            + _acc_cost(report, "pruned_channel") + "."
        )

    q = report.get("int8")
    if isinstance(q, dict):
        line = f"int8 accuracy drop (float − int8): {fmt(q.get('accuracy_drop_pp'), 'pp')} pp"
        detail = []
        if q.get("float_accuracy") is not None or q.get("int8_accuracy") is not None:
            detail.append(f"float {fmt(q.get('float_accuracy'), 'pct')}% → int8 {fmt(q.get('int8_accuracy'), 'pct')}%")
        if q.get("top1_agreement") is not None:
            detail.append(f"top-1 agreement with float {fmt(q.get('top1_agreement'), 'pct')}%")
        lines.append(line + (f" ({'; '.join(detail)})" if detail else "") + ".")

        tflm = q.get("tflm")
        if isinstance(tflm, dict):
            passed = tflm.get("passed")
            verdict = "PASSED" if passed else ("FAILED" if passed is not None else "not recorded")
            parts = []
            if tflm.get("ops"):
                counts: dict[str, int] = {}
                for o in tflm["ops"]:
                    counts[str(o)] = counts.get(str(o), 0) + 1
                parts.append(f"{len(tflm['ops'])} ops (" + ", ".join(f"{n} x{c}" for n, c in counts.items()) + ")")
            if tflm.get("arena_bytes") is not None:
                arena = f"arena {fmt(tflm.get('arena_bytes'), 'kb')} KB measured"
                if tflm.get("arena_min_bytes") is not None:
                    arena += f" (minimum that runs {fmt(tflm.get('arena_min_bytes'), 'kb')} KB)"
                parts.append(arena)
            if tflm.get("parity_max_abs_diff_steps") is not None or tflm.get("parity_exact_fraction") is not None:
                parts.append(
                    f"parity vs LiteRT: max |diff| {fmt(tflm.get('parity_max_abs_diff_steps'), 'int')} "
                    f"quantization steps, {fmt(tflm.get('parity_exact_fraction'), 'pct')}% outputs exact"
                )
            lines.append(f"TFLM check: {verdict}" + (" — " + "; ".join(parts) if parts else "") + ".")

        fits = q.get("fits")
        if isinstance(fits, dict):
            for t, f in fits.items():
                if not isinstance(f, dict):
                    continue
                bits = [f"flash {'ok' if f.get('flash_ok') else 'OVER BUDGET'}" if "flash_ok" in f else "",
                        f"arena {'ok' if f.get('arena_ok') else 'OVER BUDGET'}" if "arena_ok" in f else ""]
                if f.get("flash_headroom_bytes") is not None:
                    bits.append(f"flash headroom {fmt(f.get('flash_headroom_bytes'), 'kb')} KB")
                if f.get("arena_headroom_bytes") is not None:
                    bits.append(f"arena headroom {fmt(f.get('arena_headroom_bytes'), 'kb')} KB")
                if f.get("arena_fits_psram"):
                    bits.append("arena would fit PSRAM")
                lines.append(f"Fits {target_label(str(t))}: " + ", ".join(b for b in bits if b) + ".")
    return lines


def statements(report: dict[str, Any]) -> list[str]:
    """The plain statements every report carries, then the pipeline's own notes (deduplicated)."""
    out = [STATEMENT_FLASH, STATEMENT_SPARSITY, STATEMENT_LATENCY, STATEMENT_ARENA]
    kd = report.get("kd")
    if isinstance(kd, dict) or any(s.get("kd") for s in _stages(report)):
        conv = (kd or {}).get("convention") if isinstance(kd, dict) else None
        out.append(
            f"KD loss convention: {conv or DEFAULT_KD_CONVENTION} (CE on hard labels, KL between teacher and "
            "student softmax at temperature T)."
        )
    for n in report.get("notes") or []:
        if isinstance(n, str) and n not in out:
            out.append(n)
    return out


# --------------------------------------------------------------------------------------------- plots
def _new_figure(w: float, h: float) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    return Figure(figsize=(w, h), dpi=110, layout="constrained")


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", pad_inches=0.15)
    return buf.getvalue()


_DTYPE_STYLE = {"int8": ("tab:orange", "s"), "float32": ("tab:blue", "o")}


def _style(dtype: Any) -> tuple[str, str]:
    return _DTYPE_STYLE.get(str(dtype), ("tab:gray", "^"))


def _compact(v: float) -> str:
    a = abs(v)
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{v / div:.3g}{suf}"
    return f"{v:.3g}"


def _plot_accuracy_vs_flash(report: dict[str, Any]) -> bytes | None:
    pts = [
        (s["flash_bytes"] / 1024, 100 * s["accuracy"], str(s.get("stage")), s.get("dtype"))
        for s in _stages(report)
        if _is_pos(s.get("flash_bytes")) and _is_num(s.get("accuracy"))
    ]
    if not pts:
        return None
    fig = _new_figure(8.0, 5.2)
    ax = fig.add_subplot()
    for dtype in dict.fromkeys(p[3] for p in pts):
        color, marker = _style(dtype)
        sel = [p for p in pts if p[3] == dtype]
        ax.scatter([p[0] for p in sel], [p[1] for p in sel], s=70, color=color, marker=marker,
                   label=str(dtype), zorder=3, edgecolor="black", linewidth=0.6)
    ax.set_xscale("log")
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    ax.set_xlim(min(xs) / 2.0, max(xs) * 4.0)  # room on the right for labels
    lo, hi = min(ys), max(ys)
    pad = max(2.0, 0.15 * (hi - lo))
    ax.set_ylim(max(0.0, lo - pad), min(101.0, hi + pad))
    _place_labels(fig, ax, pts)
    ax.set_xlabel("flash as flashed (KB, log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy vs flash per stage")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="dtype", loc="lower right")
    return _png(fig)


def _place_labels(fig: Any, ax: Any, pts: Sequence[tuple[float, float, str, Any]]) -> None:
    """Label each point; points that share a flash size (same model, other stage) get stacked labels."""
    fig.canvas.draw()  # fixes the transforms
    disp = ax.transData.transform([(p[0], p[1]) for p in pts])
    step = 15 * fig.dpi / 72  # ~one text line in pixels
    order = sorted(range(len(pts)), key=lambda i: disp[i][0])
    clusters: list[list[int]] = []
    for i in order:
        if clusters and disp[i][0] - disp[clusters[-1][-1]][0] < 60:
            clusters[-1].append(i)
        else:
            clusters.append([i])
    for cl in clusters:
        cl.sort(key=lambda i: -disp[i][1])
        prev = None
        for i in cl:
            y_lab = disp[i][1] if prev is None else min(disp[i][1], prev - step)
            prev = y_lab
            dx, dy = 12.0, y_lab - disp[i][1]
            x_px = max(disp[j][0] for j in cl) - disp[i][0] + dx
            ax.annotate(
                f"{pts[i][2]} ({pts[i][1]:.1f}%, {pts[i][0]:,.0f} KB)", (pts[i][0], pts[i][1]),
                xytext=(x_px, dy), textcoords="offset pixels", va="center", fontsize=8.5,
                arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.6} if (abs(dy) > 1 or x_px > dx + 1) else None,
            )


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_pos(v: Any) -> bool:
    return _is_num(v) and v > 0


def _plot_stage_costs(report: dict[str, Any]) -> bytes | None:
    stages = _stages(report)
    if not stages:
        return None
    panels: list[tuple[str, str, Callable[[dict[str, Any]], Any], Callable[[float], str]]] = [
        ("Parameters", "parameters (count)", lambda s: s.get("params"), _compact),
        ("MACs per inference", "MACs (count)", lambda s: s.get("macs"), _compact),
        ("Flash as flashed", "flash (KB)",
         lambda s: s.get("flash_bytes") / 1024 if _is_num(s.get("flash_bytes")) else None, lambda v: f"{v:,.1f}"),
    ]
    for t in _targets(report):
        panels.append((f"est. {target_label(t)} latency (estimate)", "est. latency (ms)",
                       lambda s, t=t: (s.get("est_latency_ms") or {}).get(t), lambda v: f"{v:,.1f}"))
    panels = [p for p in panels if any(_is_pos(p[2](s)) for s in stages)]
    if not panels:
        return None
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = _new_figure(4.3 * ncols, 3.6 * nrows)
    names = [str(s.get("stage")) for s in stages]
    colors = [_style(s.get("dtype"))[0] for s in stages]
    for k, (title, ylabel, get, label) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        vals = [get(s) if _is_pos(get(s)) else None for s in stages]
        present = [v for v in vals if v is not None]
        log = max(present) / min(present) > 30
        x = range(len(stages))
        bars = ax.bar(list(x), [v if v is not None else 0 for v in vals], color=colors, edgecolor="black", lw=0.5)
        ax.bar_label(bars, labels=[label(v) if v is not None else "n/a" for v in vals], fontsize=7.5, padding=2)
        if log:
            ax.set_yscale("log")
            ax.set_ylim(min(present) / 3, max(present) * 6)
        else:
            ax.set_ylim(0, max(present) * 1.18)
        ax.set_xticks(list(x), names, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel(ylabel + (" (log scale)" if log else ""))
        ax.set_title(title, fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle("Per-stage cost (orange = int8, blue = float32)")
    return _png(fig)


def _plot_confusion(report: dict[str, Any]) -> bytes | None:
    final = report.get("final")
    if not isinstance(final, dict) or not final.get("confusion_matrix"):
        return None
    import numpy as np

    cm = np.asarray(final["confusion_matrix"], dtype=float)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.size == 0:
        return None
    n = cm.shape[0]
    names = final.get("class_names") or (report.get("dataset") or {}).get("class_names") or []
    side = min(8.5, max(5.0, 3.0 + 0.32 * n))
    fig = _new_figure(side + 1.2, side)
    ax = fig.add_subplot()
    im = ax.imshow(cm, cmap="Blues", interpolation="nearest", vmin=0)
    cb = fig.colorbar(im, ax=ax, shrink=0.85)
    cb.set_label("test images (count)")
    from matplotlib.ticker import MaxNLocator

    cb.locator = MaxNLocator(integer=True)
    cb.update_ticks()
    if n <= 20:
        labels = [str(c) for c in names] if len(names) == n else [str(i) for i in range(n)]
        ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n), labels, fontsize=8)
        if n <= 12:
            thresh = cm.max() / 2 if cm.max() > 0 else 1
            for i in range(n):
                for j in range(n):
                    if cm[i, j]:
                        ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                                color="white" if cm[i, j] > thresh else "black")
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    stage = final.get("stage") or (_stages(report)[-1].get("stage") if _stages(report) else None)
    ax.set_title(f"Confusion matrix — final model{f' ({stage})' if stage else ''}, {n} classes")
    ax.set_xlabel("predicted class" + ("" if n <= 20 else f" (0..{n - 1})"))
    ax.set_ylabel("true class" + ("" if n <= 20 else f" (0..{n - 1})"))
    return _png(fig)


def _plot_training(report: dict[str, Any]) -> bytes | None:
    hist = report.get("history")
    if not isinstance(hist, dict):
        return None
    runs = {k: v for k, v in hist.items() if isinstance(v, dict)}
    has_acc = {k: v["val_accuracy"] for k, v in runs.items() if _nums(v.get("val_accuracy"))}
    has_loss = {k: v["loss"] for k, v in runs.items() if _nums(v.get("loss"))}
    if not has_acc:
        return None
    ncols = 2 if has_loss else 1
    fig = _new_figure(6.2 * ncols, 4.4)
    ax = fig.add_subplot(1, ncols, 1)
    for name, acc in has_acc.items():
        ax.plot(range(1, len(acc) + 1), [100 * a for a in acc], marker="o", ms=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Validation accuracy per epoch")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    if has_loss:
        ax2 = fig.add_subplot(1, ncols, 2)
        for name, loss in has_loss.items():
            ax2.plot(range(1, len(loss) + 1), loss, marker="o", ms=3, label=name)
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("training loss (stage's own objective)")
        ax2.set_title("Training loss per epoch (KD stages: KD loss)")
        ax2.grid(True, alpha=0.3)
        ax2.legend(fontsize=8)
    fig.suptitle("Training curves")
    return _png(fig)


def _nums(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) > 0 and all(_is_num(x) for x in v)


_PLOTTERS: dict[str, tuple[Callable[[dict[str, Any]], bytes | None], str]] = {
    "accuracy_vs_flash": (_plot_accuracy_vs_flash, "Accuracy vs flash (KB as flashed, log scale), one point per stage"),
    "stage_costs": (_plot_stage_costs, "Per-stage parameters, MACs, flash and estimated MCU latency"),
    "confusion_matrix": (_plot_confusion, "Confusion matrix of the final model"),
    "training_curves": (_plot_training, "Validation accuracy per epoch for each trained stage"),
}


# --------------------------------------------------------------------------------------------- document
# Blocks: ("h1"|"h2"|"p", text) | ("ul", [text]) | ("table", headers, rows, numeric_flags) | ("img", name, alt)
#         | ("pre", text) | ("details", summary, [blocks])
Block = tuple[Any, ...]


def _face_dataset_items(train: dict[str, Any], ev: dict[str, Any]) -> list[str]:
    """Dataset lines for a verification run: training chip sets (what the student saw) and the LFW evaluation."""
    items = []
    for src, n in (train.get("sources") or {}).items():
        items.append(f"training chip set: {src} ({fmt(n, 'int')} chips)")
    if train.get("chips") is not None:
        items.append(f"training: {fmt(train['chips'], 'int')} chips, {fmt(train.get('identities'), 'int')} identities "
                     f"(margin head), {fmt(train.get('unlabelled'), 'int')} unlabelled (KD only), "
                     f"{fmt(len(train.get('skipped') or []), 'int')} unreadable (left out), "
                     f"{fmt(train.get('chips_without_teacher'), 'int')} without a teacher embedding")
    for ps in train.get("per_set") or []:  # LFW-overlap identities left out, per set (face.exclude_lfw_overlap)
        if ps.get("lfw_overlap_file"):
            items.append(f"left out of {ps['set']} as LFW overlap: {fmt(ps['excluded_identities'], 'int')} identities "
                         f"({fmt(ps['excluded_chips'], 'int')} chips), listed in {ps['lfw_overlap_file']}")
    if ev:
        items.append(f"evaluation: {ev.get('pairs_file')}: {fmt(ev.get('pairs_used'), 'int')} of "
                     f"{fmt(ev.get('pairs_declared'), 'int')} pairs used ({fmt(ev.get('pairs_missing'), 'int')} "
                     f"name a missing/unreadable image), {fmt(ev.get('images'), 'int')} images")
        os_ = ev.get("open_set") or {}
        if os_:
            items.append(f"open set: {fmt(os_.get('enrolled_people'), 'int')} people enrolled "
                         f"({fmt(os_.get('gallery_templates'), 'int')} templates), "
                         f"{fmt(os_.get('genuine_probes'), 'int')} genuine and {fmt(os_.get('impostor_probes'), 'int')} "
                         "stranger probes")
    return items


def _document(report: dict[str, Any], plots: dict[str, bytes]) -> list[Block]:
    doc: list[Block] = [("h1", f"AtalaIA report — {report.get('recipe_name', '?')}")]
    meta = []
    if report.get("atalaia_version"):
        meta.append(f"AtalaIA {report['atalaia_version']}")
    if report.get("created"):
        meta.append(f"created {report['created']}")
    if meta:
        doc.append(("p", ", ".join(meta) + "."))

    doc += [("h2", "How to read these numbers"), ("ul", statements(report))]

    ds = report.get("dataset")
    if isinstance(ds, dict):
        items = []
        if ds.get("root") is not None:
            items.append(f"root: {ds['root']}")
        if ds.get("num_classes") is not None:
            items.append(f"classes: {fmt(ds.get('num_classes'), 'int')}")
        if isinstance(ds.get("train"), dict):  # face pipeline: chip sets for training, LFW for evaluation
            items += _face_dataset_items(ds["train"], ds.get("eval") or {})
        splits = [f"{k} {fmt(ds.get(k), 'int')}" for k in ("train", "val", "test")
                  if ds.get(k) is not None and not isinstance(ds.get(k), dict)]
        if splits:
            items.append("images: " + ", ".join(splits))
        if ds.get("image_size"):
            size = "x".join(str(v) for v in ds["image_size"])
            ch = ds.get("channels")
            items.append(f"input: {size}" + (f"x{ch}" if ch is not None else ""))
        names = ds.get("class_names") or []
        if names:
            shown = ", ".join(str(c) for c in names[:20])
            items.append("class names: " + shown + (f", … ({len(names) - 20} more)" if len(names) > 20 else ""))
        doc += [("h2", "Dataset"), ("ul", items)]

    headers, rows = stage_table(report)
    numeric = [c.numeric for c in _columns(report)]
    doc += [("h2", "Stages"), ("table", headers, rows, numeric)]

    lines = summary_lines(report)
    if lines:
        doc += [("h2", "Findings"), ("ul", lines)]

    doc += _verification_blocks(report, plots)
    doc += _detection_blocks(report, plots)

    cp = report.get("channel_pruning")
    if isinstance(cp, dict) and cp.get("layers"):
        lrows = []
        for layer in cp["layers"]:
            if not isinstance(layer, dict):
                continue
            b, a = layer.get("before"), layer.get("after")
            kept = a / b if _is_num(a) and _is_pos(b) else None
            lrows.append([fmt(layer.get("name"), "text"), fmt(b, "int"), fmt(a, "int"), fmt(kept, "pct1")])
        doc += [("h2", "Channel pruning per layer"),
                ("table", ["layer", "channels before", "channels after", "kept (%)"], lrows, [False, True, True, True])]

    final = report.get("final")
    if isinstance(final, dict) and isinstance(final.get("per_class"), dict):
        pc = final["per_class"]
        n = max((len(pc.get(k) or []) for k in ("precision", "recall", "f1", "support")), default=0)
        names = final.get("class_names") or (ds.get("class_names") if isinstance(ds, dict) else None) or []

        def at(key: str, i: int) -> Any:
            seq = pc.get(key) or []
            return seq[i] if i < len(seq) else None

        prow = [[fmt(names[i] if i < len(names) else i, "text"), fmt(at("precision", i), "pct"),
                 fmt(at("recall", i), "pct"), fmt(at("f1", i), "pct"), fmt(at("support", i), "int")]
                for i in range(n)]
        if prow:
            table = ("table", ["class", "precision (%)", "recall (%)", "F1 (%)", "support"], prow,
                     [False, True, True, True, True])
            doc += [("h2", "Final model per class"), ("details", f"{n} classes", [table])]

    plot_blocks = [("img", name, _PLOTTERS[name][1]) for name in PLOT_NAMES if name in plots]
    if plot_blocks:
        doc += [("h2", "Plots"), *plot_blocks]

    timings = report.get("timings_s")
    if isinstance(timings, dict) and timings:
        trows = [[fmt(k, "text"), fmt(v, "s")] for k, v in timings.items()]
        doc += [("h2", "Wall-clock time per stage"), ("table", ["stage", "time (s)"], trows, [False, True])]

    if report.get("recipe") is not None:
        doc += [("h2", "Resolved recipe"),
                ("details", "recipe (as run)", [("pre", json.dumps(report["recipe"], indent=2, default=str))])]
    return doc


def verification_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Face-verification rows (LFW 10-fold protocol) from report["verification"]["models"]."""
    ver = report.get("verification")
    models = ver.get("models") if isinstance(ver, dict) else None
    if not isinstance(models, dict):
        return [], []
    headers = ["model", "LFW acc (%)", "± std (pp)", "ROC AUC", "TAR@FAR=1e-2 (%)", "TAR@FAR=1e-3 (%)",
               "open-set rank-1 (%)", "open-set FAR @ acc thr (%)", "open-set FAR @ FAR1e-3 thr (%)",
               "open-set @ 1% stranger FAR: residents in (%)", "LFW acc plain / mirror TTA (%)"]
    rows = []
    for stage, v in models.items():
        if not isinstance(v, dict):
            continue
        os1 = v.get("open_set") or {}
        os3 = v.get("open_set_at_far_1e-3") or {}
        osg = v.get("open_set_at_open_far_1e-2") or {}
        rows.append([fmt(v.get("label", stage), "text"), fmt(v.get("acc_mean"), "pct"), fmt(v.get("acc_std"), "pct"),
                     fmt(v.get("auc"), "f4"), fmt(v.get("tar_at_far_0.01"), "pct"),
                     fmt(v.get("tar_at_far_0.001"), "pct"), fmt(os1.get("rank1"), "pct"),
                     fmt(os1.get("far"), "pct"), fmt(os3.get("far"), "pct"), fmt(osg.get("dir"), "pct"),
                     _mirror_cell(v.get("mirror_tta"))])
    return headers, rows


def _mirror_cell(tta: Any) -> str:
    """'92.80 / *93.60*': both modes' LFW accuracy, the one the recipe uses (face.mirror_tta) starred."""
    if not isinstance(tta, dict) or "acc_plain" not in tta:
        return "–"
    a, b = fmt(tta.get("acc_plain"), "pct"), fmt(tta.get("acc_mirror"), "pct")
    return f"{a} / {b}*" if tta.get("used") else f"{a}* / {b}"


def _verification_blocks(report: dict[str, Any], plots: dict[str, bytes]) -> list[Block]:
    headers, rows = verification_table(report)
    if not rows:
        return []
    ver = report["verification"]
    blocks: list[Block] = [("h2", "Face verification"), ("p", str(ver.get("protocol", ""))),
                           ("table", headers, rows, [False] + [True] * (len(headers) - 1))]
    used, missing = ver.get("pairs_used"), ver.get("pairs_missing")
    if used is not None:
        blocks.append(("p", f"pairs used: {fmt(used, 'int')}; pairs naming a missing image: {fmt(missing, 'int')}."))
    blocks.append(("p", "Open set: people with enough images are enrolled (k images each) and their other images "
                        "are probes; everyone else is a stranger. One 1:N match gives a stranger as many chances as "
                        "there are templates, so pair thresholds let many strangers in. The last column uses the "
                        "threshold `atalaia access` uses by default (about 1 % of strangers' attempts accepted for "
                        "this gallery size, from all cross-identity pair scores) and gives the residents let in as "
                        "themselves."))
    blocks.append(("p", "Mirror TTA: a face's embedding is the normalised sum of the unit embeddings of the chip "
                        "and its mirror image (two inferences per face: double the latency columns per face). The "
                        "last column scores both modes from the same model; * marks the one the recipe uses "
                        "(face.mirror_tta) and every other column."))
    if "roc_lfw" in plots:
        blocks.append(("img", "roc_lfw", "ROC curves on LFW (cosine similarity)"))
    return blocks + _tier_blocks(report)


def _tier_blocks(report: dict[str, Any]) -> list[Block]:
    """The face tier (recipe face.tier) of the run: where it fits, the final int8 model against the tier's limits
    (atalaia.face.budget) and its door figure. Nothing when the recipe names no tier."""
    from atalaia.face.budget import TIERS

    face = (report.get("recipe") or {}).get("face") or {}
    tier = TIERS.get(str(face.get("tier") or ""))
    int8 = [s for s in report.get("stages") or [] if isinstance(s, dict) and s.get("dtype") == "int8"]
    if tier is None or not int8:
        return []
    final = next((s for s in reversed(int8) if s.get("arena_bytes")), int8[-1])
    per_face = 2 if face.get("mirror_tta") else 1
    macs = final.get("macs") * per_face if isinstance(final.get("macs"), (int, float)) else None
    checks = [("int8 flash (bytes, as flashed)", final.get("flash_bytes"), tier.flash_bytes_max),
              ("TFLM arena (bytes, measured)", final.get("arena_bytes"), tier.arena_bytes_max),
              (f"MACs per face ({per_face} inference{'s' * (per_face > 1)})", macs, tier.macs_per_face_max)]
    rows = [[name, fmt(v, "int"), fmt(lim, "int"), "–" if v is None else ("yes" if v <= lim else "NO")]
            for name, v, lim in checks]
    blocks: list[Block] = [("h2", f"Size tier {tier.name}"),
                           ("p", f"Tier {tier.name} fits {tier.fits}. The final int8 model "
                                 f"({final.get('stage')}) against the tier's limits (atalaia.face.budget):"),
                           ("table", ["limit", "value", "tier maximum", "met"], rows, [False, True, True, False])]
    door = ((report.get("verification") or {}).get("models") or {}).get(final.get("stage")) or {}
    osg = door.get("open_set_at_open_far_1e-2") or {}
    if osg.get("dir") is not None:
        blocks.append(("p", f"Door figure of this model: with every eligible LFW person enrolled, "
                            f"{fmt(osg.get('dir'), 'pct')} % of residents' attempts are let in as themselves at the "
                            f"threshold that lets about 1 % of strangers' attempts in ({fmt(osg.get('far'), 'pct')} % "
                            "measured). The household table (5 residents) is "
                            "`python benchmarks/access_control.py --run-dir RUN --tier "
                            f"{tier.name}`."))
    return blocks


def _detection_blocks(report: dict[str, Any], plots: dict[str, bytes]) -> list[Block]:
    """The `detection` section (task: detection): metrics per stage against the pseudo-labels, recall by face
    size, the int8 budgets, the PR curves and the example frames (written by the plan into plots/)."""
    det = report.get("detection")
    per = det.get("per_stage") if isinstance(det, dict) else None
    if not isinstance(per, dict) or not per:
        return []
    blocks: list[Block] = [("h2", "Face detection"), ("p", str(det.get("label_note", "")))]
    hw = det.get("input_hw")
    if isinstance(hw, list) and len(hw) == 2:
        blocks.append(("p", f"Input {hw[0]}x{hw[1]} grey (H x W), letterboxed frames."))
    rows = []
    for stage, m in per.items():
        if not isinstance(m, dict):
            continue
        rows.append([fmt(stage, "text"), fmt(m.get("ap50"), "pct1"), fmt(m.get("ap50_95"), "pct1"),
                     fmt(m.get("precision"), "pct1"), fmt(m.get("recall"), "pct1"), fmt(m.get("nme"), "num"),
                     fmt(m.get("fp_per_empty_frame"), "num"), fmt(m.get("faces"), "int"),
                     fmt(m.get("empty_frames"), "int")])
    thr = next((m.get("score_threshold") for m in per.values() if isinstance(m, dict)), None)
    blocks += [("table", ["stage", "AP50 (%)", "AP50:95 (%)", "precision (%)", "recall (%)", "NME (inter-ocular)",
                          "FP per empty frame", "faces", "empty frames"], rows,
                [False] + [True] * 8),
               ("p", f"Precision, recall, NME and false positives at the operating score threshold "
                     f"{fmt(thr, 'num')}; AP over all scores.")]
    stage = "int8" if isinstance(per.get("int8"), dict) else next(iter(per))
    bins = per[stage].get("recall_by_size") if isinstance(per[stage], dict) else None
    if isinstance(bins, dict) and bins:
        brows = [[fmt(k, "text"), fmt(v.get("faces"), "int"), fmt(v.get("recall"), "pct1")]
                 for k, v in bins.items() if isinstance(v, dict)]
        blocks += [("p", f"Recall by face size ({stage}; longest box side in frame pixels):"),
                   ("table", ["face size (px)", "faces", "recall (%)"], brows, [False, True, True])]
    budgets = (det.get("int8") or {}).get("budgets") if isinstance(det.get("int8"), dict) else None
    if isinstance(budgets, dict) and budgets:
        urows = [[fmt(k, "text"), fmt(v.get("value"), "int"), fmt(v.get("limit"), "int"),
                  "yes" if v.get("ok") else "NO"] for k, v in budgets.items() if isinstance(v, dict)]
        blocks += [("p", "int8 detector against the door-camera budgets (issue 13):"),
                   ("table", ["budget", "value", "limit", "met"], urows, [False, True, True, False])]
    if "detection_pr" in plots:
        blocks.append(("img", "detection_pr", "Precision-recall at IoU 0.5 per stage (against dlib pseudo-labels)"))
    if "detection_examples" in plots:
        blocks.append(("img", "detection_examples", "Test frames: detections (score >= threshold) with 5 "
                                                    "landmarks, pseudo-label boxes for comparison"))
    return blocks


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _to_markdown(doc: Sequence[Block]) -> str:
    out: list[str] = []
    for b in doc:
        kind = b[0]
        if kind == "h1":
            out.append(f"# {b[1]}\n")
        elif kind == "h2":
            out.append(f"## {b[1]}\n")
        elif kind == "p":
            out.append(f"{b[1]}\n")
        elif kind == "ul":
            out.append("\n".join(f"- {x}" for x in b[1]) + "\n")
        elif kind == "table":
            headers, rows, numeric = b[1], b[2], b[3]
            out.append("| " + " | ".join(_md_cell(h) for h in headers) + " |")
            out.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
            out.extend("| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows)
            out.append("")
        elif kind == "img":
            out.append(f"![{b[2]}](plots/{b[1]}.png)\n")
        elif kind == "pre":
            out.append("```\n" + b[1] + "\n```\n")
        elif kind == "details":
            out.append(f"<details><summary>{html.escape(b[1])}</summary>\n")
            out.append(_to_markdown(b[2]))
            out.append("</details>\n")
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#1d2430;line-height:1.45}
h1{border-bottom:2px solid #2b6cb0;padding-bottom:.2em}h2{margin-top:1.6em;color:#2b4a7a}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #c9d2de;padding:.3em .6em}th{background:#eef3f9;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr:nth-child(even) td{background:#f8fafc}
img{max-width:100%;height:auto;display:block;margin:.8em 0;border:1px solid #e2e8f0}
pre{background:#f4f6f8;padding:.8em;overflow:auto;font-size:.85em}
li{margin:.25em 0}figcaption{color:#4a5568;font-size:.9em}
"""


def _to_html(doc: Sequence[Block], plots: dict[str, bytes], title: str) -> str:
    e = html.escape

    def render(blocks: Sequence[Block]) -> list[str]:
        out: list[str] = []
        for b in blocks:
            kind = b[0]
            if kind in ("h1", "h2", "p"):
                out.append(f"<{kind}>{e(b[1])}</{kind}>")
            elif kind == "ul":
                out.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in b[1]) + "</ul>")
            elif kind == "table":
                headers, rows, numeric = b[1], b[2], b[3]
                head = "".join(f"<th>{e(h)}</th>" for h in headers)
                body = "".join(
                    "<tr>" + "".join(
                        f'<td class="num">{e(c)}</td>' if n else f"<td>{e(c)}</td>" for c, n in zip(r, numeric, strict=True)
                    ) + "</tr>"
                    for r in rows
                )
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif kind == "img":
                data = base64.b64encode(plots[b[1]]).decode("ascii")
                out.append(f'<figure><img alt="{e(b[2])}" src="data:image/png;base64,{data}">'
                           f"<figcaption>{e(b[2])}</figcaption></figure>")
            elif kind == "pre":
                out.append(f"<pre>{e(b[1])}</pre>")
            elif kind == "details":
                out.append(f"<details><summary>{e(b[1])}</summary>" + "".join(render(b[2])) + "</details>")
        return out

    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(render(doc))
        + "\n</body></html>\n"
    )


# --------------------------------------------------------------------------------------------- public API
def _as_dict(report: Report | dict[str, Any]) -> dict[str, Any]:
    """The report.json form of a typed `Report` (a dict is checked by parsing it into one first)."""
    if isinstance(report, Report):
        return report.to_dict()
    if not isinstance(report, dict):
        raise TypeError(f"report must be a Report, got {type(report).__name__}")
    missing = [k for k in ("recipe_name", "stages") if k not in report]
    if missing:
        raise ValueError(f"report is missing required key(s): {', '.join(missing)}")
    return Report.from_dict(report).to_dict()


def write_report(report: Report | dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write report.json, report.md, report.html (self-contained) and plots/*.png into `out_dir`.

    Returns {"json", "md", "html", "plot_<name>" for each plot written}. Optional sections missing from
    `report` are skipped; plots left over from an earlier render that no longer apply are removed.
    """
    report = _as_dict(report)
    out_dir = Path(out_dir)
    plot_dir = out_dir / "plots"
    paths: dict[str, Path] = {"json": atomic_write_json(out_dir / "report.json", report)}

    plots: dict[str, bytes] = {}
    for name in PLOT_NAMES:
        png = _PLOTTERS[name][0](report)
        target = plot_dir / f"{name}.png"
        if png is None:
            if target.exists():
                target.unlink()
            continue
        plots[name] = png
        paths[f"plot_{name}"] = atomic_write_bytes(target, png)

    ver = report.get("verification")
    roc = out_dir / ver["roc_plot"] if isinstance(ver, dict) and ver.get("roc_plot") else None
    if roc is not None and roc.is_file():
        plots["roc_lfw"] = roc.read_bytes()
    det = report.get("detection")
    for rel in (det.get("plots") or []) if isinstance(det, dict) else []:
        p = out_dir / str(rel)
        if Path(str(rel)).stem in ("detection_pr", "detection_examples") and p.is_file():
            plots[Path(str(rel)).stem] = p.read_bytes()
    doc = _document(report, plots)
    paths["md"] = atomic_write_text(out_dir / "report.md", _to_markdown(doc))
    title = f"AtalaIA report — {report.get('recipe_name')}"
    paths["html"] = atomic_write_text(out_dir / "report.html", _to_html(doc, plots, title))
    return paths


def console_table(report: Report | dict[str, Any]) -> Any:
    """The stage table as a `rich.table.Table`: one row per stage, same cells as report.md/html."""
    from rich.table import Table

    report = _as_dict(report)
    table = Table(title=f"AtalaIA — {report.get('recipe_name', '?')}", header_style="bold")
    for col in _columns(report):
        table.add_column(col.header, justify="right" if col.numeric else "left",
                         style="dim" if col.header.startswith("est.") else None)
    for row in stage_table(report)[1]:
        table.add_row(*row)
    return table


def print_summary(report: Report | dict[str, Any], console: Any = None, *, width: int | None = None,
                  wide: bool = False) -> None:
    """Print the stage table fitted to the terminal (80 columns in a pipe; columns dropped by priority and
    named, numbers never split; `wide` keeps all), then KD gain, pruning costs, int8 drop, TFLM check and units."""
    report = _as_dict(report)
    if console is None:
        from rich.console import Console

        console = Console()
    headers, rows = stage_table(report)
    cols = [Col(h, priority=_PRIORITY.get(h.split(" (")[0], 1), justify="left" if h in ("stage", "model", "dtype")
                else "right") for h in headers]
    # laid out for the console's own width (the terminal's; the CLI gives logs and pipes 180 columns)
    print_table(console, f"AtalaIA — {report.get('recipe_name', '?')}", cols, rows,
                width=console.width if width is None else width, wide=wide)
    for line in summary_lines(report):
        console.print(f"• {line}", markup=False, highlight=False)
    console.print(
        "Flash = .tflite as flashed (never gzip); \"est.\" = estimated MCU latency, not measured.",
        markup=False, highlight=False, style="dim",
    )
