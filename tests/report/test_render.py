"""Report rendering: files written, HTML self-contained, Markdown/HTML/console show exactly report.json's numbers."""

from __future__ import annotations

import base64
import copy
import json
import re

import numpy as np
import pytest
from rich.console import Console

from atalaia.evaluate.result import StageResult
from atalaia.report import DASH, console_table, print_summary, stage_table, write_report

TARGETS = ["esp32", "esp32s3"]


def build_report(num_classes: int = 40, seed: int = 0) -> dict:
    """A report as the pipeline writes it: ORL-like 40 identities, ResNet teacher, a small CNN student."""
    rng = np.random.default_rng(seed)
    names = [f"s{i + 1}" for i in range(num_classes)]

    def est(macs: int) -> dict[str, float]:
        return {"esp32": macs * 380.0 / 7_157_888, "esp32s3": macs * 54.0 / 7_157_888}

    kd = {"alpha": 0.1, "temperature": 5.0}
    stages = [
        StageResult("teacher", "resnet_small", "float32", 1_203_688, 98_112_512, 4_839_212, 0.9625, 0.958333,
                    host_latency_ms=6.8123),
        StageResult("baseline", "micro_cnn", "float32", 52_456, 3_145_728, 215_340, 0.8875, 0.873512,
                    host_latency_ms=0.41256, est_latency_ms=est(3_145_728)),
        StageResult("distilled", "micro_cnn", "float32", 52_456, 3_145_728, 215_340, 0.9125, 0.905104,
                    host_latency_ms=0.40871, est_latency_ms=est(3_145_728), kd=kd),
        StageResult("pruned_magnitude", "micro_cnn", "float32", 52_456, 3_145_728, 215_340, 0.9, 0.89125,
                    host_latency_ms=0.41002, est_latency_ms=est(3_145_728), sparsity=0.5, gzip_bytes=118_227, kd=kd),
        StageResult("pruned_channel", "micro_cnn", "float32", 14_020, 812_544, 62_112, 0.875, 0.861458,
                    host_latency_ms=0.17349, est_latency_ms=est(812_544), kd=kd),
        StageResult("int8", "micro_cnn", "int8", 14_020, 812_544, 22_936, 0.86875, 0.855, host_latency_ms=0.0912,
                    arena_bytes=38_912, est_latency_ms=est(812_544), extra={"tflite": "int8/model.tflite"}),
    ]
    cm = np.zeros((num_classes, num_classes), dtype=int)
    for i in range(num_classes):
        cm[i, i] = 3 + int(rng.integers(0, 2))
        if rng.random() < 0.3:
            cm[i, int(rng.integers(0, num_classes))] += 1
    tp, pred, sup = np.diag(cm), cm.sum(0), cm.sum(1)
    prec = np.where(pred > 0, tp / np.maximum(pred, 1), 0.0)
    rec = tp / sup
    f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0.0)
    epochs = 12

    def curve(end: float) -> list[float]:
        return [round(end * (1 - np.exp(-(e + 1) / 3)) + rng.normal(0, 0.01), 4) for e in range(epochs)]

    return {
        "atalaia_version": "0.1.0",
        "recipe_name": "default",
        "created": "2026-03-01T12:00:00Z",
        "recipe": {"name": "default", "data": {"root": "data/orl", "image_size": [64, 64]},
                   "student": {"name": "micro_cnn", "width": 16}, "kd": kd, "targets": TARGETS},
        "dataset": {"root": "data/orl", "num_classes": num_classes, "class_names": names, "train": 240,
                    "val": 80, "test": 80, "image_size": [64, 64], "channels": 1},
        "targets": list(TARGETS),
        "stages": [s.to_dict() for s in stages],
        "kd": {"convention": "loss = alpha*CE + (1-alpha)*T^2*KL(p_t^T || p_s^T)", "alpha": 0.1,
               "temperature": 5.0, "gain_accuracy": 0.9125 - 0.8875, "gain_macro_f1": 0.905104 - 0.873512},
        "magnitude_pruning": {"target_sparsity": 0.5, "achieved_sparsity": 0.5, "flash_bytes": 215_340,
                              "gzip_bytes": 118_227, "dense_flash_bytes": 215_340,
                              "note": "Zeros are stored: TFLM has no sparse kernels."},
        "channel_pruning": {"ratio": 0.5, "criterion": "l1", "params_before": 52_456, "params_after": 14_020,
                            "macs_before": 3_145_728, "macs_after": 812_544, "flash_before": 215_340,
                            "flash_after": 62_112,
                            "layers": [{"name": "conv1", "before": 16, "after": 8},
                                       {"name": "conv2", "before": 32, "after": 16},
                                       {"name": "conv3", "before": 64, "after": 32}]},
        "int8": {"float_accuracy": 0.875, "int8_accuracy": 0.86875, "accuracy_drop_pp": 0.625,
                 "top1_agreement": 0.975,
                 "tflm": {"ops": ["CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "MEAN", "FULLY_CONNECTED",
                                  "SOFTMAX"],
                          "arena_bytes": 38_912, "arena_min_bytes": 38_700, "parity_max_abs_diff_steps": 1,
                          "parity_exact_fraction": 0.9875, "passed": True},
                 "fits": {"esp32": {"flash_ok": True, "arena_ok": True, "flash_headroom_bytes": 3_122_728,
                                    "arena_headroom_bytes": 124_928},
                          "esp32s3": {"flash_ok": True, "arena_ok": True}}},
        "final": {"confusion_matrix": cm.tolist(), "class_names": names,
                  "per_class": {"precision": prec.tolist(), "recall": rec.tolist(), "f1": f1.tolist(),
                                "support": sup.tolist()}},
        "history": {"teacher": {"loss": [2.0 / (e + 1) for e in range(epochs)], "val_accuracy": curve(0.96)},
                    "baseline": {"loss": [3.0 / (e + 1) for e in range(epochs)], "val_accuracy": curve(0.89)},
                    "distilled": {"loss": [1.5 / (e + 1) for e in range(epochs)], "val_accuracy": curve(0.91)}},
        "timings_s": {"teacher": 312.4, "baseline": 41.2, "distilled": 55.9, "pruned_magnitude": 20.1,
                      "pruned_channel": 24.7, "int8": 3.2},
        "notes": ["Flash = bytes of the .tflite as flashed (int8 for the int8 stage), never gzip.",
                  "Latency on MCUs is an estimate (MACs / calibrated throughput), labelled est."],
    }


@pytest.fixture
def report() -> dict:
    return build_report()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[dict, dict]:
    """The standard report rendered once (rendering takes ~2 s); tests that change the report render their own."""
    rep = build_report()
    return rep, write_report(rep, tmp_path_factory.mktemp("run") / "run")


def _md_table(md: str, heading: str) -> tuple[list[str], list[list[str]]]:
    """The first pipe table after `## heading`, split into cells (escaped pipes restored)."""
    section = md.split(f"## {heading}\n", 1)[1]
    block = []
    for ln in section.splitlines()[1:]:
        if not ln.startswith("|"):
            if block:
                break
            continue
        block.append(ln)
    assert block, f"no table after {heading}"

    def cells(ln: str) -> list[str]:
        parts = re.split(r"(?<!\\)\|", ln.strip())[1:-1]
        return [p.strip().replace("\\|", "|") for p in parts]

    return cells(block[0]), [cells(ln) for ln in block[2:]]


def _num(cell: str) -> float | None:
    return None if cell == DASH else float(cell.replace(",", ""))


def _decimals(cell: str) -> int:
    return len(cell.split(".", 1)[1]) if "." in cell else 0


def _expected(stage: dict, header: str) -> tuple[float | None, int | None]:
    """(value in display units, required decimals) computed straight from the JSON, independent of fmt()."""
    m = re.fullmatch(r"est\. (.+) \(ms\)", header)
    if m:
        t = {"ESP32": "esp32", "ESP32-S3": "esp32s3"}[m.group(1)]
        v = (stage.get("est_latency_ms") or {}).get(t)
        return v, 1
    table = {
        "params": (stage["params"], 0),
        "MACs": (stage["macs"], 0),
        "flash (KB)": (stage["flash_bytes"] / 1024, 1),
        "arena (KB)": (stage["arena_bytes"] / 1024 if stage["dtype"] == "int8" and stage["arena_bytes"] else None, 1),
        "host latency (ms)": (stage["host_latency_ms"], 3),
        "accuracy (%)": (100 * stage["accuracy"], 2),
        "macro-F1 (%)": (100 * stage["macro_f1"], 2),
    }
    return table[header]


def test_write_report_creates_all_files(rendered):
    report, paths = rendered
    run = paths["json"].parent
    for key in ("json", "md", "html", "plot_accuracy_vs_flash", "plot_stage_costs", "plot_confusion_matrix",
                "plot_training_curves"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0, key
    assert paths["json"].name == "report.json" and run.name == "run"
    assert paths["md"] == run / "report.md" and paths["html"] == run / "report.html"
    for name in ("accuracy_vs_flash", "stage_costs", "confusion_matrix", "training_curves"):
        p = run / "plots" / f"{name}.png"
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(paths["json"].read_text())
    # a report dict without a schema version is from an older AtalaIA: written back as version 0, task filled in
    assert saved.pop("schema_version") == 0 and saved.pop("task") == "classification"
    assert saved == json.loads(json.dumps(report))
    assert not list(run.rglob(".*.tmp")), "atomic write left a temp file"


def test_html_is_self_contained(tmp_path, report):
    # A URL inside the data must not become a resource reference either.
    report["dataset"]["root"] = "https://example.org/faces"
    text = write_report(report, tmp_path)["html"].read_text()
    refs = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", text, flags=re.I)
    assert refs, "expected embedded images"
    assert not [r for r in refs if re.match(r"(https?:)?//", r, flags=re.I)]
    assert "<script" not in text.lower() and "<link" not in text.lower() and "@import" not in text
    images = re.findall(r'<img[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == 4
    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in images)
    assert "<style>" in text


def test_markdown_table_equals_json_at_displayed_precision(tmp_path, report):
    report["stages"][4]["arena_bytes"] = 120_000  # a float row with an arena recorded: still not shown
    paths = write_report(report, tmp_path)
    md = paths["md"].read_text()
    saved = json.loads(paths["json"].read_text())
    headers, rows = _md_table(md, "Stages")
    assert headers == ["stage", "model", "dtype", "params", "MACs", "flash (KB)", "arena (KB)", "host latency (ms)",
                       "est. ESP32 (ms)", "est. ESP32-S3 (ms)", "accuracy (%)", "macro-F1 (%)"]
    assert [r[0] for r in rows] == [s["stage"] for s in saved["stages"]]
    for row, stage in zip(rows, saved["stages"], strict=True):
        cell = dict(zip(headers, row, strict=True))
        assert cell["model"] == stage["model"] and cell["dtype"] == stage["dtype"]
        for h in headers[3:]:
            expected, decimals = _expected(stage, h)
            if expected is None:
                assert cell[h] == DASH, (stage["stage"], h, cell[h])
                continue
            assert _decimals(cell[h]) == decimals, (h, cell[h])
            assert abs(_num(cell[h]) - expected) <= 0.5 * 10**-decimals + 1e-9, (stage["stage"], h, cell[h], expected)
    # arena shows only on the int8 row
    arena = [r[headers.index("arena (KB)")] for r in rows]
    assert arena[:-1] == [DASH] * 5 and arena[-1] == "38.0"


def test_html_and_console_show_the_same_cells_as_markdown(rendered):
    report, paths = rendered
    _, md_rows = _md_table(paths["md"].read_text(), "Stages")
    html_text = paths["html"].read_text()
    first_table = html_text.split("<h2>Stages</h2>", 1)[1].split("</table>", 1)[0]
    html_rows = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in re.findall(r"<tr>(.*?)</tr>", first_table)]
    html_rows = [r for r in html_rows if r]
    assert html_rows == md_rows
    table = console_table(report)
    console_rows = [[str(c) for c in col._cells] for col in table.columns]
    assert [list(r) for r in zip(*console_rows, strict=True)] == md_rows


def test_console_table_one_row_per_stage_and_est_column_per_target(report):
    table = console_table(report)
    headers = [str(c.header) for c in table.columns]
    assert table.row_count == len(report["stages"]) == 6
    assert [h for h in headers if h.startswith("est.")] == ["est. ESP32 (ms)", "est. ESP32-S3 (ms)"]
    report["targets"] = ["esp32", "esp32s3", "esp32c3"]
    report["stages"][-1]["est_latency_ms"]["esp32c3"] = 12.34
    headers = [str(c.header) for c in console_table(report).columns]
    assert [h for h in headers if h.startswith("est.")] == ["est. ESP32 (ms)", "est. ESP32-S3 (ms)", "est. ESP32-C3 (ms)"]
    assert stage_table(report)[1][-1][headers.index("est. ESP32-C3 (ms)")] == "12.3"
    assert stage_table(report)[1][0][headers.index("est. ESP32-C3 (ms)")] == DASH


def test_print_summary_prints_table_and_findings(report):
    console = Console(record=True, width=260, color_system=None)
    print_summary(report, console)
    out = console.export_text()
    for stage in ("teacher", "baseline", "distilled", "pruned_magnitude", "pruned_channel", "int8"):
        assert stage in out
    assert "est. ESP32-S3 (ms)" in out
    assert "KD gain (distilled − baseline): accuracy +2.50 pp, macro-F1 +3.16 pp" in out
    assert "int8 accuracy drop (float − int8): +0.62 pp" in out or "int8 accuracy drop (float − int8): +0.63 pp" in out
    assert "TFLM check: PASSED" in out and "arena 38.0 KB measured" in out


def test_report_states_units_and_costs_whatever_their_sign(tmp_path, report):
    report["kd"]["gain_accuracy"] = -0.0125  # KD hurt: must still be reported, with its sign
    report["kd"]["gain_macro_f1"] = -0.0031
    report["int8"]["tflm"]["passed"] = False
    md = write_report(report, tmp_path)["md"].read_text()
    assert "never a gzip size" in md
    assert "Unstructured (magnitude) sparsity does not shrink a TFLM model" in md
    assert "MCU latencies are estimates" in md and "est. ESP32 (ms)" in md
    assert "KD loss convention: loss = alpha*CE + (1-alpha)*T^2*KL(p_t^T || p_s^T)" in md
    assert "KD gain (distilled − baseline): accuracy -1.25 pp, macro-F1 -0.31 pp" in md
    # magnitude pruning: flash unchanged, gzip only for reference, accuracy cost vs distilled (90.00 - 91.25)
    assert "flash 210.3 KB as flashed vs 210.3 KB dense" in md
    assert "gzip 115.5 KB, for reference only, not flashed" in md
    assert "accuracy -1.25 pp, macro-F1 -1.39 pp (pruned_magnitude − distilled)" in md
    assert "params 52,456 → 14,020 (-73.3%)" in md
    assert "TFLM check: FAILED" in md
    assert "Fits ESP32: flash ok, arena ok" in md


OPTIONAL = ["atalaia_version", "created", "recipe", "dataset", "targets", "kd", "magnitude_pruning",
            "channel_pruning", "int8", "final", "history", "timings_s", "notes"]


@pytest.mark.parametrize("key", OPTIONAL)
def test_missing_optional_section_is_skipped(tmp_path, report, key):
    del report[key]
    paths = write_report(report, tmp_path)
    md = paths["md"].read_text()
    assert paths["html"].is_file()
    headers, rows = _md_table(md, "Stages")
    assert len(rows) == 6
    heading = {"dataset": "## Dataset", "final": "## Final model per class", "timings_s": "## Wall-clock time",
               "recipe": "## Resolved recipe", "channel_pruning": "## Channel pruning per layer"}.get(key)
    if heading:
        assert heading not in md
    finding = {"kd": "KD gain", "magnitude_pruning": "Magnitude pruning:", "channel_pruning": "Channel pruning (",
               "int8": "TFLM check"}.get(key)
    if finding:
        assert finding not in md
    if key == "final":
        assert "plot_confusion_matrix" not in paths and not (tmp_path / "plots" / "confusion_matrix.png").exists()
    if key == "history":
        assert "plot_training_curves" not in paths
    if key == "targets":  # falls back to the targets that have estimates
        assert "est. ESP32 (ms)" in headers and "est. ESP32-S3 (ms)" in headers


def test_minimal_report_and_sparse_stage_fields(tmp_path):
    minimal = {"recipe_name": "bare", "stages": [
        {"stage": "baseline", "model": "m", "dtype": "float32", "params": 10, "macs": 100, "flash_bytes": 2048,
         "accuracy": 0.5, "macro_f1": 0.25},
        {"stage": "int8", "model": "m", "dtype": "int8", "params": 10, "macs": 100, "flash_bytes": 1024,
         "accuracy": float("nan"), "macro_f1": None, "arena_bytes": None, "est_latency_ms": None},
    ]}
    paths = write_report(minimal, tmp_path)
    headers, rows = _md_table(paths["md"].read_text(), "Stages")
    assert not [h for h in headers if h.startswith("est.")]
    assert rows[0][headers.index("flash (KB)")] == "2.0" and rows[0][headers.index("accuracy (%)")] == "50.00"
    assert rows[1][headers.index("accuracy (%)")] == DASH and rows[1][headers.index("arena (KB)")] == DASH
    assert set(paths) == {"json", "md", "html", "plot_accuracy_vs_flash", "plot_stage_costs"}
    assert console_table(minimal).row_count == 2
    assert write_report({"recipe_name": "empty", "stages": []}, tmp_path / "e")["md"].is_file()


def test_rerender_removes_stale_plots(tmp_path, report):
    write_report(report, tmp_path)
    assert (tmp_path / "plots" / "training_curves.png").exists()
    smaller = copy.deepcopy(report)
    del smaller["history"]
    write_report(smaller, tmp_path)
    assert not (tmp_path / "plots" / "training_curves.png").exists()


def test_small_confusion_matrix_and_bad_input(tmp_path):
    small = build_report(num_classes=5)
    paths = write_report(small, tmp_path)
    assert paths["plot_confusion_matrix"].is_file()
    with pytest.raises(ValueError, match="stages"):
        write_report({"recipe_name": "x"}, tmp_path)
    with pytest.raises(TypeError):
        write_report([], tmp_path)  # type: ignore[arg-type]


@pytest.mark.parametrize(("low", "high", "p", "verdict"), [(-0.10, -0.0125, 0.12, "significant (interval excludes 0)"),
                                                          (-0.025, 0.05, 1.0, "not significant")])
def test_kd_line_says_the_interval_decides_significance(report, low, high, p, verdict):
    """The verdict follows the paired interval; McNemar's p is shown after it, not as its cause."""
    from atalaia.report import summary_lines

    r = copy.deepcopy(report)
    r["kd"] = {"alpha": 0.1, "temperature": 5.0, "gain_accuracy": (low + high) / 2, "gain_macro_f1": 0.0,
               "gain_interval": {"accuracy": {"diff": {"value": (low + high) / 2, "low": low, "high": high},
                                              "p_value": p, "significant": low > 0 or high < 0}}}
    line = next(x for x in summary_lines(r) if x.startswith("KD gain"))
    assert f"pp: {verdict}; McNemar p = {p:.2g}" in line


def test_detection_section_is_rendered(tmp_path):
    """A `task: detection` report: metrics per stage, recall by size, budgets, and the plan's PR and example
    plots (read from plots/, embedded in the HTML)."""
    m = {"ap50": 0.805, "ap50_95": 0.381, "precision": 0.924, "recall": 0.754, "nme": 0.2031,
         "fp_per_empty_frame": 0.0278, "faces": 451, "empty_frames": 36, "score_threshold": 0.5,
         "recall_by_size": {"0-16": {"faces": 19, "recall": 0.0}, "48-64": {"faces": 148, "recall": 0.919}}}
    rep = {"recipe_name": "det", "task": "detection", "stages": [
        {"stage": "int8", "model": "face_det", "dtype": "int8", "params": 10, "macs": 100, "flash_bytes": 1024,
         "accuracy": 0.805, "macro_f1": None}],
        "detection": {"label_note": "Labels are dlib pseudo-labels.", "input_hw": [128, 96],
                      "per_stage": {"int8": m}, "plots": ["plots/detection_pr.png", "plots/detection_examples.png"],
                      "int8": {"budgets": {"flash_bytes": {"value": 49264, "limit": 153600, "ok": True}}}}}
    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "detection_pr.png").write_bytes(png)
    paths = write_report(rep, tmp_path)
    md = paths["md"].read_text()
    headers, rows = _md_table(md, "Face detection")
    assert rows == [["int8", "80.5", "38.1", "92.4", "75.4", "0.2031", "0.0278", "451", "36"]]
    assert "| 48-64 | 148 | 91.9 |" in md and "| flash_bytes | 49,264 | 153,600 | yes |" in md
    assert "dlib pseudo-labels" in md and "](plots/detection_pr.png)" in md
    assert "detection_examples.png" not in md  # not written: not shown
    html_text = paths["html"].read_text()
    assert "Face detection" in html_text and base64.b64encode(png).decode() in html_text
    assert (tmp_path / "plots" / "detection_pr.png").read_bytes() == png  # the plan's plot is kept on re-render
