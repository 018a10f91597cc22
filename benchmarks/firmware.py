"""Cortex-M firmware benchmark: build each model's bare-metal firmware, run it in QEMU, tabulate.

Rows are model x target: the three calibration models of ../shared/calibration (real published models), the
default-run int8 model and, when given, a face run's int8 student. Columns: linked flash and RAM (from the
ELF), arena, instructions per Invoke (emulated, QEMU plugin), est. ms from instructions (CPI fitted on the
published Cortex-M4 anchors), est. ms from MACs (the MAC-rate model), bit-exact on 8 self-test inputs.
Every number here is either linked (sizes), emulated (instructions, bit-exactness) or an estimate (ms).

    .venv/bin/python benchmarks/firmware.py --run /tmp/fw_default [--face-run RUN] [--targets cortex-m4,cortex-m7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
SHARED = next((p for p in (REPO.parent / "shared", Path("/work/shared")) if p.is_dir()), REPO.parent / "shared")
CALIBRATION = {
    "person_detect": "person_detect.tflite",
    "mlperf_resnet8": "mlperf_tiny_ic_resnet8_int8.tflite",
    "mlperf_vww_mobilenet": "mlperf_tiny_vww_mobilenet_int8.tflite",
}


def _calibration_input(blob: bytes):
    import numpy as np
    from tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(blob, arena_size=4 << 20)
    d = it.get_input_details(0)
    return np.random.default_rng(0).integers(-128, 128, size=tuple(d["shape"])).astype(np.int8)


def _face_arch(size: int = 64, width: float = 1.5, dim: int = 128):
    """The lfw.yaml face student's architecture (64x64 grey, ds_cnn width 1.5, GAP head, 128-d) as int8 with
    UNTRAINED weights, and a face_model.json with placeholder thresholds: sizes and instruction counts do not
    depend on the weights, accuracy and the decisions' meaning do (the decisions are still compared with the
    host's)."""
    import numpy as np

    from atalaia.deploy.tflite import TFLiteRunner, convert_int8
    from atalaia.face.train import build_student

    m = build_student(size, width=width, embedding_dim=dim, head="gap")
    rep = np.random.default_rng(0).uniform(0, 1, (32, size, size, 1)).astype(np.float32)
    blob = convert_int8(m, rep)
    r = TFLiteRunner(blob)
    facts = {"chip": "untrained architecture", "grey": True, "crop": 0.7, "input_size": size, "embedding_dim": dim,
             "input_scale": r.input_scale, "input_zero_point": r.input_zero_point, "output_scale": r.output_scale,
             "output_zero_point": r.output_zero_point, "mirror_tta": True, "threshold_lfw_accuracy": 0.5,
             "threshold_far_1e-3": 0.9, "threshold_far_1e-2": 0.7,
             "impostor_tail": {"pairs": 10**6, "thresholds": {"0.01": 0.6, "0.001": 0.8, "0.0001": 0.95}}}
    return blob, r.quantize_input(rep[:1]), facts


def _row(name: str, kind: str, rec: dict) -> dict:
    s, lat = rec["sizes"], rec["latency_est"]
    return {
        "model": name,
        "kind": kind,
        "target": rec["target"],
        "machine": rec.get("qemu", {}).get("machine"),
        "ops": rec["model"]["ops"],
        "macs": rec["model"]["macs"],
        "tflite_bytes": rec["model"]["tflite_bytes"],
        "flash_linked_bytes": s["flash_bytes"],
        "flash_without_self_test_bytes": s.get("flash_without_self_test_bytes"),
        "ram_linked_bytes": s["ram_bytes"],
        "split": s.get("split"),
        "arena_linked_bytes": rec["arena"]["linked_bytes"],
        "arena_used_on_target_bytes": rec["arena"].get("used_on_target_bytes"),
        "instructions_per_invoke": rec.get("instructions", {}).get("per_invoke"),
        "est_ms_from_instructions": lat.get("from_instructions_ms"),
        "est_ms_from_macs": lat.get("from_macs_ms"),
        "clock_mhz": lat.get("clock_mhz"),
        "bit_exact": rec.get("self_test", {}).get("bit_exact"),
        "bit_exact_samples": rec.get("self_test", {}).get("bit_exact_samples"),
        "max_diff_steps": rec.get("self_test", {}).get("max_diff_steps"),
        "face_decisions_equal_host": rec.get("face", {}).get("decisions_equal_host"),
        "build_seconds": rec["build"]["seconds"],
        "qemu_seconds": rec.get("qemu", {}).get("seconds"),
    }


def _md(rows: list[dict], cal: list[dict]) -> str:
    def n(v, fmt="{:,}"):
        return "—" if v is None else fmt.format(v)

    out = ["# Cortex-M firmware (emulated in QEMU; est. = estimate)", "",
           "| model | target | linked flash (B) | flash w/o self-test (B) | RAM (B) | arena (B) | instructions "
           "per Invoke (emulated) | est. ms from instructions | est. ms from MACs | bit-exact |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['model']} | {r['target']} | error: {r['error'][:80]} |||||||| |")
            continue
        be = "—" if r["bit_exact"] is None else ("yes" if r["bit_exact"] else "NO")
        mac_note = " ¹" if r["target"] == "cortex-m7" and r["est_ms_from_macs"] is not None else ""
        out.append(f"| {r['model']} | {r['target']} | {n(r['flash_linked_bytes'])} | "
                   f"{n(r['flash_without_self_test_bytes'])} | {n(r['ram_linked_bytes'])} | "
                   f"{n(r['arena_linked_bytes'])} | {n(r['instructions_per_invoke'])} | "
                   f"{n(r['est_ms_from_instructions'], '{:.1f}')} | {n(r['est_ms_from_macs'], '{:.1f}')}{mac_note} | {be} "
                   f"({r['bit_exact_samples']}/8) |")
    out += ["", "Flash and RAM are as linked (`arm-none-eabi-size`), with 8 embedded self-test inputs; the column "
            "without them is the product's flash. RAM = .data + .bss (arena included) + 8 KB heap + 16 KB stack. "
            "Instructions: counted in QEMU 7.2 between markers around Invoke() (emulated, median of 8). "
            "est. ms from instructions: x CPI fitted on the Cortex-M4 anchors below, at 120 MHz; cortex-m7/m55 have "
            "no TFLM anchor, so no estimate. ¹ the cortex-m7 MAC-rate profile is calibrated on ST X-CUBE-AI "
            "timings (not TFLM) at 280 MHz: not comparable with a TFLM firmware.",
            "", "Leave-one-out error on the published Cortex-M4 anchors (STM32L4R5 @120 MHz, MLPerf Tiny v0.5 "
            "reference TFLM):", "",
            "| anchor | instructions | published ms | CPI implied | est. ms (CPI fit) | LOO error, instructions | "
            "LOO error, MAC rate |", "|---|---|---|---|---|---|---|"]
    for c in cal:
        out.append(f"| {c['model']} | {c['instructions']:,} | {c['published_ms']} | {c['cpi_implied']} | "
                   f"{c['estimate_ms']} | {c['loo_rel_error']:+.1%} | {c['mac_rate_loo_rel_error']:+.1%} |")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", default=[], help="run folder(s) with a finished int8 stage")
    ap.add_argument("--face-run", default=None, help="a face run (label: weights from a short training)")
    ap.add_argument("--face-arch", action="store_true", help="add the lfw.yaml student architecture (untrained)")
    ap.add_argument("--targets", default="cortex-m4")
    ap.add_argument("--tflm-root", default=str(SHARED / "vendor" / "tflm"))
    ap.add_argument("--cache", default=None)
    ap.add_argument("--only", default=None, help="comma-separated model names to (re)run; others kept from --result")
    ap.add_argument("--merge", action="append", default=[], help="keep the rows of this earlier result file")
    ap.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "firmware.json"))
    args = ap.parse_args()

    from atalaia.api import firmware as firmware_for_run
    from atalaia.deploy.mcu import firmware_for_model
    from atalaia.deploy.targets import instruction_calibration
    from atalaia.deploy.tflm import check_tflm
    from atalaia.errors import AtalaiaError
    from atalaia.ioutil import atomic_write_json, atomic_write_text

    old = {}
    for f in ([args.result] if args.only else []) + args.merge:
        if Path(f).is_file():
            old.update({(r["model"], r["target"]): r for r in json.loads(Path(f).read_text())["rows"]})
    only = set(args.only.split(",")) if args.only else None
    jobs = []
    for name, f in CALIBRATION.items():
        jobs.append((name, "calibration model (published)", ("blob", SHARED / "calibration" / f)))
    for r in args.run:
        jobs.append((f"default-run int8 ({Path(r).name})", "atalaia run (default recipe)", ("run", Path(r))))
    if args.face_arch:
        jobs.append(("face student architecture (lfw.yaml, untrained weights)",
                     "64x64 grey ds_cnn width 1.5, 128-d, mirror TTA; sizes/instructions only", ("arch", None)))
    if args.face_run:
        jobs.append(("face student int8 (short training: sizes/instructions only)",
                     "face run, 1 epoch (weights do not change sizes or instruction counts)",
                     ("run", Path(args.face_run))))
    rows = []
    t_all = time.perf_counter()
    for target in args.targets.split(","):
        for name, kind, (how, path) in jobs:
            if only is not None and not any(o in name for o in only):
                if (name, target) in old:
                    rows.append(old.pop((name, target)))
                continue
            old.pop((name, target), None)
            print(f"[{target}] {name} ...", flush=True)
            try:
                if how == "run":
                    rec, _ = firmware_for_run(path, target=target, tflm_root=args.tflm_root, cache_dir=args.cache)
                elif how == "arch":
                    blob, x1, facts = _face_arch()
                    with tempfile.TemporaryDirectory() as tmp:
                        rec = firmware_for_model(blob, stored_input_q=x1, arena_bytes=check_tflm(blob).arena_bytes,
                                                 target=target, tflm_root=args.tflm_root, work_dir=Path(tmp) / "p",
                                                 cache_dir=args.cache, face_facts=facts)
                else:
                    blob = path.read_bytes()
                    with tempfile.TemporaryDirectory() as tmp:
                        rec = firmware_for_model(blob, stored_input_q=_calibration_input(blob),
                                                 arena_bytes=check_tflm(blob).arena_bytes, target=target,
                                                 tflm_root=args.tflm_root, work_dir=Path(tmp) / "p",
                                                 cache_dir=args.cache)
                row = _row(name, kind, rec)
            except AtalaiaError as e:
                row = {"model": name, "kind": kind, "target": target, "error": str(e)}
            print(json.dumps({k: row.get(k) for k in ("flash_linked_bytes", "ram_linked_bytes",
                                                      "instructions_per_invoke", "bit_exact", "error")}), flush=True)
            rows.append(row)
    rows += list(old.values())  # merged rows of targets/models not run now
    cal = instruction_calibration()
    res = {
        "what": "bare-metal firmware per model x target: sizes as linked (arm-none-eabi-gcc 12.2, -O2, newlib-nano, "
                "TFLM + CMSIS-NN), instructions per Invoke counted in QEMU 7.2 (emulated, not measured on a device), "
                "latencies are estimates",
        "rows": rows,
        "instruction_calibration": cal,
        "seconds": round(time.perf_counter() - t_all, 1),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }
    atomic_write_json(args.result, res)
    atomic_write_text(Path(args.result).with_suffix(".md"), _md(rows, cal))
    print(_md(rows, cal))
    return 0


if __name__ == "__main__":
    sys.exit(main())
