"""`atalaia` command line. User mistakes print one line (`error: ...`) and exit 2, without a traceback."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import typer  # noqa: E402
from rich.console import Console  # noqa: E402

from atalaia.errors import AtalaiaError  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Shrink face-recognition CNNs for microcontrollers, and measure what it cost.")
console = Console(stderr=False)
if not console.is_terminal:  # logs and CI: do not squeeze the stage table into 80 columns
    console = Console(stderr=False, width=180)
err_console = Console(stderr=True)


@app.command()
def run(
    recipe: Annotated[Path | None, typer.Argument(help="Recipe YAML (default: the bundled default recipe).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run folder (default: runs/<recipe name>).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe value: KEY=VALUE.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Re-run every stage, ignoring finished ones.")] = False,
    from_study: Annotated[str | None, typer.Option("--from-study", help="Take tuned knobs from this study.")] = None,
    study_storage: Annotated[str | None, typer.Option(
        "--study-storage", help="Study storage URL (default: RUN/tune/study.db).")] = None,
    trial: Annotated[int | None, typer.Option(
        "--trial", help="Trial number (default: best; multi-objective: most accurate Pareto trial).")] = None,
) -> None:
    """Run the whole pipeline: teacher, baseline, distil, prune, int8, TFLM check, report."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from atalaia.config import load_recipe, parse_overrides
    from atalaia.ioutil import import_tensorflow_quietly
    from atalaia.pipeline import make_pipeline
    from atalaia.report import print_summary

    r = load_recipe(recipe, parse_overrides(set_))
    import_tensorflow_quietly()
    out_dir = out or Path("runs") / r.name
    if from_study:
        from atalaia.compress.tune import apply_study

        r = apply_study(r, study_storage or str(out_dir), from_study, trial)
    console.print(f"[bold]AtalaIA[/] recipe [cyan]{r.name}[/] -> {out_dir}")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:

        def make_progress(desc: str, total: int):
            task = progress.add_task(desc, total=total)

            def tick(n: int) -> None:
                progress.update(task, completed=n)
                if n >= total:
                    progress.remove_task(task)

            return tick

        pipe = make_pipeline(r, out_dir, force=force, log=lambda m: progress.console.print(m, markup=False, highlight=False),
                        make_progress=make_progress)
        report = pipe.run()
    print_summary(report, console)
    console.print(f"report: {out_dir / 'report.html'}  (also report.md, report.json)")


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="A run folder holding report.json.")]) -> None:
    """Re-render report.md / report.html / plots from a run's report.json and print the table."""
    import json

    from atalaia.report import print_summary, write_report

    path = run_dir / "report.json"
    if not path.is_file():
        raise AtalaiaError(f"no report.json in '{run_dir}': run `atalaia run` first")
    rep = json.loads(path.read_text())
    write_report(rep, run_dir)
    print_summary(rep, console)


@app.command()
def targets() -> None:
    """List MCU targets and how well the latency estimate matches published timings."""
    from rich.table import Table

    from atalaia.deploy.targets import TARGETS, calibration_report

    t = Table(title="MCU targets")
    for c in ("name", "clock MHz", "flash KB", "SRAM for arena KB", "PSRAM KB", "kernels", "description"):
        t.add_column(c)
    for tg in TARGETS.values():
        t.add_row(tg.name, str(tg.clock_mhz), f"{tg.flash_bytes / 1024:.0f}", f"{tg.sram_bytes / 1024:.0f}",
                  f"{tg.psram_bytes / 1024:.0f}", tg.kernels, tg.description)
    console.print(t)
    c = Table(title="latency estimate (est.) vs published timings of real models (calibration anchors)")
    cols = [("target", "target"), ("model", "model"), ("MACs", "macs"), ("published ms", "published_ms"),
            ("est. ms", "estimate_ms"), ("fit error", "rel_error"),
            ("leave-one-out error", "loo_rel_error"), ("single-rate error", "single_rate_rel_error"), ("fit", "fit"), ("source", "source")]
    for title, _ in cols:
        c.add_column(title, overflow="fold")
    for row in calibration_report():
        cells = []
        for _, k in cols:
            v = row.get(k)
            cells.append(f"{100 * v:+.1f}%" if k.endswith("rel_error") and v is not None
                         else f"{v:,}" if isinstance(v, int) else f"{v:.1f}" if isinstance(v, float) else str(v))
        c.add_row(*cells)
    console.print(c)
    console.print("A fit with as many parameters as anchors is exact on them by construction: the leave-one-out "
                  "error is the honest one. Targets with a single anchor use a single MACs rate; their estimates "
                  "for other model shapes are extrapolations.")
    _print_cortex_m_calibration()


def _print_cortex_m_calibration() -> None:
    """Parts `atalaia firmware --part` links for, and the instruction-count estimate's anchors."""
    from rich.table import Table

    from atalaia.deploy.targets import PARTS, instruction_calibration

    p = Table(title="Cortex-M parts (atalaia firmware --part)")
    for col in ("part", "core", "clock MHz", "flash KB", "SRAM KB", "note"):
        p.add_column(col)
    for part in PARTS.values():
        p.add_row(part.name, part.cpu, str(part.clock_mhz), f"{part.flash_bytes / 1024:.0f}",
                  f"{part.sram_bytes / 1024:.0f}", part.note)
    console.print(p)
    c = Table(title="est. ms from instructions (emulated counts x fitted CPI) vs published timings")
    for col in ("target", "model", "instructions", "published ms", "CPI implied", "est. ms", "leave-one-out error",
                "MAC-rate leave-one-out error"):
        c.add_column(col)
    for r in instruction_calibration():
        c.add_row(r["target"], r["model"], f"{r['instructions']:,}", f"{r['published_ms']:.1f}",
                  f"{r['cpi_implied']:.3f}", f"{r['estimate_ms']:.1f}", f"{100 * r['loo_rel_error']:+.1f}%",
                  f"{100 * r['mac_rate_loo_rel_error']:+.1f}%")
    console.print(c)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")],
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: RUN/export).")] = None,
    target: Annotated[str, typer.Option(
        help="ESP-IDF chip (esp32s3, esp32, ...) or bare-metal core (cortex-m4, cortex-m7, cortex-m55).")] = "esp32s3",
    name: Annotated[str, typer.Option(help="C symbol name of the model array.")] = "g_model",
    tflm_root: Annotated[Path | None, typer.Option(
        "--tflm-root", help="TFLM tree (create_tflm_tree.py layout) a Cortex-M project compiles "
        "(default: $ATALAIA_TFLM_ROOT).")] = None,
) -> None:
    """Write the int8 model as a C array and a firmware project (ESP-IDF or bare-metal Cortex-M) that runs
    8 self-test inputs against the host's outputs."""
    from atalaia.deploy.mcu import export_run

    out_dir = out or run_dir / "export"
    paths = export_run(run_dir, out_dir, target=target, tflm_root=tflm_root, name=name)
    console.print(f"wrote {len(paths)} files under {out_dir} (C array + firmware project for {target})")


@app.command()
def firmware(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")],
    target: Annotated[str, typer.Option(help="cortex-m4 | cortex-m7 | cortex-m55.")] = "cortex-m4",
    emulate: Annotated[bool, typer.Option("--emulate", help="Run it in qemu-system-arm and count instructions.")
                       ] = False,
    tflm_root: Annotated[Path | None, typer.Option(
        "--tflm-root", help="TFLM tree to compile (default: $ATALAIA_TFLM_ROOT).")] = None,
    part: Annotated[str | None, typer.Option(
        "--part", help="Link for a real part (stm32f446re, nrf52840, stm32h743zi, ...); fails if it does not fit.")
                    ] = None,
    kernels: Annotated[str, typer.Option(help="cmsis_nn | reference.")] = "cmsis_nn",
    cache: Annotated[Path | None, typer.Option(
        "--cache", help="Compiled-TFLM cache (default: ~/.cache/atalaia/tflm).")] = None,
) -> None:
    """Build the int8 model's bare-metal firmware (arm-none-eabi-gcc, only the kernels it uses), optionally run
    it in QEMU; writes RUN/firmware/<target>/firmware.json (linked sizes, bit-exact, instructions, est. ms)."""
    from atalaia.deploy.mcu import firmware_for_run
    from atalaia.deploy.targets import get_part

    p = get_part(part) if part else None
    rec, path = firmware_for_run(run_dir, target=target, tflm_root=tflm_root, emulate=emulate, part=p,
                                 kernels=kernels, cache_dir=cache)
    s = rec["sizes"]
    console.print(f"{target} firmware: flash {s['flash_bytes']:,} B (linked; "
                  f"{s.get('flash_without_self_test_bytes', 0):,} B without the self-test data), "
                  f"RAM {s['ram_bytes']:,} B (arena {rec['arena']['linked_bytes']:,} B)"
                  + (f", fits {p.name}" if p else ""))
    if rec["emulated"]:
        st, lat = rec["self_test"], rec["latency_est"]
        est = (f"est. {lat['from_instructions_ms']:.1f} ms from instructions @ {lat['clock_mhz']} MHz"
               if lat.get("from_instructions_ms") is not None else "no instruction-based estimate for this core")
        mac = f", est. {lat['from_macs_ms']:.1f} ms from MACs" if lat.get("from_macs_ms") is not None else ""
        console.print(f"emulated on QEMU {rec['qemu']['machine']}: bit-exact "
                      f"{'yes' if st['bit_exact'] else 'NO'} ({st['bit_exact_samples']}/{st['n']} inputs, "
                      f"max diff {st['max_diff_steps']} steps), {rec['instructions']['per_invoke']:,} instructions "
                      f"per Invoke; {est}{mac}")
        if "face" in rec:
            console.print(f"face access control on the emulated MCU: {rec['face']['probes']} decisions, "
                          f"equal to the host's: {'yes' if rec['face']['decisions_equal_host'] else 'NO'}")
    console.print(f"wrote {path}")


@app.command()
def align(
    src: Annotated[Path, typer.Argument(help="Identity folders of raw photos: SRC/<identity>/<image>.")],
    dst: Annotated[Path, typer.Argument(help="Where the 112x112 aligned chips go (same folder layout).")],
    pick: Annotated[str, typer.Option(help="Which face when several: largest | center.")] = "largest",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Re-align even unchanged files.")] = False,
) -> None:
    """Detect, landmark and align faces (dlib HOG, MMOD fallback, 5 points) into 112x112 chips."""
    from atalaia.data.align import align_folder

    if pick not in ("largest", "center"):
        raise AtalaiaError(f"--pick must be 'largest' or 'center', got '{pick}'")
    try:
        summary = align_folder(src, dst, cache=not no_cache, progress=True, pick=pick)  # type: ignore[arg-type]
    except ImportError as e:
        raise AtalaiaError(str(e)) from None
    console.print(f"{summary.total} images: {summary.aligned} aligned, {summary.cached} from cache, "
                  f"{summary.no_face} without a face (listed in {dst / 'no_face_found.txt'}), "
                  f"{summary.unreadable} unreadable (listed in {dst / 'failed.txt'})")


access_app = typer.Typer(no_args_is_help=True, help="Face access control with a face run's int8 model: "
                         "enrol people, check a face at the door, list, remove. Events go to STATE/events.jsonl.")
app.add_typer(access_app, name="access")
_RunArg = Annotated[Path, typer.Argument(help="A finished face-verification run folder (recipes/lfw.yaml).")]
_StateOpt = Annotated[Path | None, typer.Option("--state", help="Gallery + event log folder (default RUN/access).")]
_AlignedOpt = Annotated[bool, typer.Option("--aligned", help="Images are 112x112 chips from `atalaia align`.")]


def _access(run_dir: Path, state: Path | None, aligned: bool = False, threshold: str = "open_far_1e-2"):
    from atalaia.face.access import AccessControl

    return AccessControl(run_dir, state_dir=state, aligned=aligned, threshold=threshold)


@access_app.command("enrol")
def access_enrol(run_dir: _RunArg, name: Annotated[str, typer.Argument(help="The person's name.")],
                 images: Annotated[list[Path], typer.Argument(help="Photos (or chips with --aligned).")],
                 state: _StateOpt = None, aligned: _AlignedOpt = False) -> None:
    """Enrol a person: one template per photo with a face."""
    res = _access(run_dir, state, aligned).enrol(name, images)
    for p, why in res["skipped"]:
        err_console.print(f"skipped {p}: {why}", highlight=False)
    console.print(f"{res['name']}: {res['added']} template(s) added, {res['templates']} in total")


@access_app.command("check")
def access_check(run_dir: _RunArg,
                 images: Annotated[list[Path], typer.Argument(help="Photos to recognise (or chips with --aligned).")],
                 state: _StateOpt = None, aligned: _AlignedOpt = False,
                 threshold: Annotated[str, typer.Option(
                     help="open_far_1e-2 (~1 % of strangers' attempts accepted, for the current gallery size) | "
                          "open_far_1e-3 | far_1e-3 | far_1e-2 | lfw_accuracy (fixed pairwise) | a cosine value."
                 )] = "open_far_1e-2") -> None:
    """Recognise each image and decide (exit status 1 if any was refused)."""
    ac = _access(run_dir, state, aligned, threshold)
    if ac.warning:
        err_console.print(f"warning: {ac.warning}", highlight=False)
    refused = 0
    for im in images:
        d = ac.check(im)
        refused += not d.granted
        verdict = "[green]GRANTED[/]" if d.granted else "[red]REFUSED[/]"
        who = f"{d.person} (cosine {d.score:.3f}, threshold {d.threshold:.3f})" if d.person else d.reason
        console.print(f"{verdict} {im}: {who}", highlight=False)
    raise typer.Exit(1 if refused else 0)


@access_app.command("list")
def access_list(run_dir: _RunArg, state: _StateOpt = None) -> None:
    """Who is enrolled, with template counts."""
    people = _access(run_dir, state).people
    console.print("\n".join(f"{n}: {k} template(s)" for n, k in people.items()) or "nobody is enrolled")


@access_app.command("remove")
def access_remove(run_dir: _RunArg, name: Annotated[str, typer.Argument(help="The person to forget.")],
                  state: _StateOpt = None) -> None:
    """Forget a person (their templates are deleted from the gallery)."""
    n = _access(run_dir, state).remove(name)
    console.print(f"{name}: {n} template(s) removed")


from atalaia.compress.tune_cli import tune_command  # noqa: E402

app.command(name="tune")(tune_command)


def main() -> None:
    try:
        app()
    except AtalaiaError as e:
        err_console.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted; finished stages are kept, run again to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()
