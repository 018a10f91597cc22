"""`atalaia` command line. User mistakes print one line (`error: ...`) and exit 2, without a traceback."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import typer  # noqa: E402
from rich.console import Console  # noqa: E402

from atalaia.errors import AtalaiaError, AtalaiaWarning  # noqa: E402

_default_showwarning = warnings.showwarning

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
    check: Annotated[bool, typer.Option(
        "--check", help="Only validate the recipe, the output folder and the data (headers), then stop.")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="Every column of the stage table, however wide.")] = False,
) -> None:
    """Run the whole pipeline: teacher, baseline, distil, prune, int8, TFLM check, report."""
    r, out_dir, summary = _validate_run(recipe, out, set_)  # seconds, before TensorFlow; nothing written
    if check:
        console.print(f"ok: recipe '{r.name}', {summary}, run folder {out_dir}", highlight=False)
        return
    _run_pipeline(r, out_dir, force=force, from_study=from_study, study_storage=study_storage, trial=trial,
                  wide=wide)


def _import_tensorflow() -> None:
    """Import TensorFlow with its native start-up banners (written to fd 2 by two libraries, whatever
    TF_CPP_MIN_LOG_LEVEL says) silenced, so a command's stderr holds our one-line error and nothing else."""
    from atalaia.ioutil import import_tensorflow_quietly

    import_tensorflow_quietly()


def _validate_run(recipe: Path | None, out: Path | None, set_: list[str] | None):
    """Recipe parse and ranges, output folder, dataset listing and image headers: each mistake is one line
    (exit 2) before any heavy import, and nothing is created."""
    from atalaia.config import load_recipe, parse_overrides
    from atalaia.preflight import preflight

    r = load_recipe(recipe, parse_overrides(set_))
    out_dir = out or Path("runs") / r.name
    summary = preflight(r, out_dir, "--out" if out else f"run folder '{out_dir}' (set --out)")
    return r, out_dir, summary


def _run_pipeline(r, out_dir: Path, *, force: bool, from_study: str | None, study_storage: str | None,
                  trial: int | None, wide: bool = False) -> None:
    import shutil

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from atalaia.data.images import pixel_limit
    from atalaia.errors import DataError
    from atalaia.ioutil import import_tensorflow_quietly

    new_folder = not out_dir.exists()
    try:
        import_tensorflow_quietly()
        from atalaia.pipeline import run_recipe
        from atalaia.tune import apply_study, tuned_recipe

        if from_study:
            r = apply_study(r, study_storage or str(out_dir), from_study, trial)
        elif r.distill.tune:  # alpha/T (and other tuned knobs) from the study in <out>/tune
            r = tuned_recipe(r, out_dir)
        console.print(f"[bold]AtalaIA[/] recipe [cyan]{r.name}[/] -> {out_dir}")
        with pixel_limit(r.data.max_image_pixels), \
                Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                         console=console, transient=True) as progress:

            def make_progress(desc: str, total: int):
                task = progress.add_task(desc, total=total)

                def tick(n: int) -> None:
                    progress.update(task, completed=n)
                    if n >= total:
                        progress.remove_task(task)

                return tick

            report = run_recipe(r, out_dir, force=force, progress=make_progress,
                                log=lambda m: progress.console.print(m, markup=False, highlight=False))
    except KeyboardInterrupt:
        # typer would turn this into a bare exit 130; say what is kept first
        err_console.print("interrupted; finished stages are kept, run again to resume", highlight=False)
        # every stage's files are written atomically and its DONE.json last, so skipping the interpreter's
        # teardown (~3 s with TensorFlow loaded) loses nothing
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    except DataError:
        # a pixel-level data error (the headers were fine): a folder this command made, with no finished
        # stage in it, would only look like a run
        if new_folder and out_dir.is_dir() and not any(out_dir.glob("*/DONE.json")):
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    from atalaia.report import print_summary

    print_summary(report, console, wide=wide)
    console.print(f"report: {out_dir / 'report.html'}  (also report.md, report.json)")


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="A run folder holding report.json.")],
           wide: Annotated[bool, typer.Option("--wide", help="Every column of the stage table.")] = False) -> None:
    """Re-render report.md / report.html / plots from a run's report.json and print the table."""
    import json

    from atalaia.report import Report, print_summary, write_report

    path = run_dir / "report.json"
    if not path.is_file():
        raise AtalaiaError(f"no report.json in '{run_dir}': run `atalaia run` first")
    try:
        rep = Report.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError, KeyError, AttributeError, OSError) as e:
        raise AtalaiaError(f"'{path}' is not a readable AtalaIA report ({type(e).__name__}); run `atalaia run` "
                           "again to rewrite it") from None
    write_report(rep, run_dir)
    print_summary(rep, console, wide=wide)


@app.command()
def targets(wide: Annotated[bool, typer.Option(
        "--wide", help="Every column, however wide (default: what fits the terminal, 80 columns in a pipe).")] = False
            ) -> None:
    """List MCU targets and how well the latency estimate matches published timings."""
    from atalaia.deploy.targets import TARGETS, calibration_report
    from atalaia.report.table import Col, print_table, terminal_width

    width = terminal_width()
    cols = [Col("name"), Col("clock MHz", priority=2, justify="right"), Col("flash KB", justify="right"),
            Col("arena SRAM KB", justify="right"), Col("PSRAM KB", priority=1, justify="right"),
            Col("kernels", priority=1), Col("description", text=True, priority=3, min_width=30)]
    rows = [[tg.name, tg.clock_mhz, f"{tg.flash_bytes / 1024:.0f}", f"{tg.sram_bytes / 1024:.0f}",
             f"{tg.psram_bytes / 1024:.0f}", tg.kernels, tg.description] for tg in TARGETS.values()]
    hidden = print_table(console, "MCU targets", cols, rows, width=width, wide=wide)
    if "description" in hidden:
        for tg in TARGETS.values():
            console.print(f"• {tg.name}: {tg.description}", highlight=False, markup=False, width=width)
    cols = [Col("target"), Col("model"), Col("MACs", priority=2, justify="right"),
            Col("published ms", justify="right"), Col("est. ms", justify="right"),
            Col("fit error", priority=1, justify="right"), Col("LOO error", justify="right"),
            Col("single-rate error", priority=3, justify="right"), Col("fit", text=True, priority=4, min_width=24),
            Col("source", text=True, priority=5, min_width=24)]
    pct = "+.1%"
    rows = [[a["target"], a["model"], format(a["macs"], ","), format(a["published_ms"], ".1f"),
             format(a["estimate_ms"], ".1f"), _cell(a["rel_error"], pct), _cell(a["loo_rel_error"], pct),
             _cell(a["single_rate_rel_error"], pct), a["fit"], a["source"]] for a in calibration_report()]
    print_table(console, "latency estimate (est.) vs published timings (calibration anchors)", cols, rows,
                width=width, wide=wide)
    console.print("A fit with as many parameters as anchors is exact on them by construction: the leave-one-out "
                  "(LOO) error is the honest one (— with a single anchor). Targets with a single anchor use a "
                  "single MACs rate; their estimates for other model shapes are extrapolations.",
                  highlight=False, width=width if not wide else None)
    _print_cortex_m_calibration(width, wide)


def _cell(value, spec: str) -> str:
    from atalaia.report.table import cell

    return cell(value, spec)


def _print_cortex_m_calibration(width: int, wide: bool) -> None:
    """Parts `atalaia firmware --part` links for, and the instruction-count estimate's anchors."""
    from atalaia.deploy.targets import PARTS, instruction_calibration
    from atalaia.report.table import Col, print_table

    cols = [Col("part"), Col("core"), Col("clock MHz", priority=1), Col("flash KB"), Col("SRAM KB"),
            Col("note", text=True, priority=3, min_width=24)]
    rows = [[p.name, p.cpu, p.clock_mhz, f"{p.flash_bytes / 1024:.0f}", f"{p.sram_bytes / 1024:.0f}", p.note]
            for p in PARTS.values()]
    print_table(console, "Cortex-M parts (atalaia firmware --part)", cols, rows, width=width, wide=wide)
    cols = [Col("target"), Col("model"), Col("instructions", priority=1), Col("published ms"),
            Col("CPI implied", priority=2), Col("est. ms"), Col("leave-one-out error"),
            Col("MAC-rate leave-one-out error", priority=1)]
    rows = [[r["target"], r["model"], f"{r['instructions']:,}", f"{r['published_ms']:.1f}", f"{r['cpi_implied']:.3f}",
             f"{r['estimate_ms']:.1f}", _cell(r["loo_rel_error"], "+.1%"), _cell(r["mac_rate_loo_rel_error"], "+.1%")]
            for r in instruction_calibration()]
    print_table(console, "est. ms from instructions (emulated counts x fitted CPI) vs published timings", cols, rows,
                width=width, wide=wide)


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
    detector: Annotated[Path | None, typer.Option(
        "--detector", help="A finished detection run to bundle with this face run: the firmware runs camera "
        "frame -> detector -> alignment -> recogniser -> decision, both models in one tensor arena.")] = None,
) -> None:
    """Write the int8 model as a C array and a firmware project (ESP-IDF or bare-metal Cortex-M) that runs
    8 self-test inputs against the host's outputs (and, with --detector, the frame -> decision path)."""
    _import_tensorflow()
    from atalaia.api import export as export_run

    out_dir = out or run_dir / "export"
    paths = export_run(run_dir, out=out_dir, target=target, tflm_root=tflm_root, name=name, detector=detector)
    console.print(f"wrote {len(paths)} files under {out_dir} (C array + firmware project for {target}"
                  + (", detector bundled: frame -> decision, one shared arena)" if detector else ")"))


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
    detector: Annotated[Path | None, typer.Option(
        "--detector", help="Bundle a detection run's detector (face runs): frame -> decision, one shared arena.")
                        ] = None,
) -> None:
    """Build the int8 model's bare-metal firmware (arm-none-eabi-gcc, only the kernels it uses), optionally run
    it in QEMU; writes RUN/firmware/<target>/firmware.json (linked sizes, bit-exact, instructions, est. ms)."""
    _import_tensorflow()
    from atalaia.api import firmware as build_firmware
    from atalaia.deploy.targets import get_part

    p = get_part(part) if part else None
    rec, path = build_firmware(run_dir, target=target, tflm_root=tflm_root, emulate=emulate, part=part,
                               kernels=kernels, cache_dir=cache, detector=detector)
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
        if "frame" in rec:
            fa = rec["frame"]["arena"] or {}
            console.print(f"frame -> decision on the emulated MCU: {rec['frame']['frames']} frames, equal to the "
                          f"host's: {'yes' if rec['frame']['decisions_equal_host'] else 'NO'}; one arena of "
                          f"{fa.get('shared_bytes')} B (detector used {fa.get('detector_used_bytes')} B, "
                          f"recogniser {fa.get('recogniser_used_bytes')} B)")
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


@app.command("make-set")
def make_set(
    src: Annotated[Path, typer.Argument(help="Aligned chips from `atalaia align`: SRC/<person>/<chip>.jpg "
                                        "(chips directly in SRC are unlabelled).")],
    dst: Annotated[Path, typer.Argument(help="The chip set to write: chips112/, unlabeled/, labels.csv, "
                                        "dlib_resnet128.npz (a face.train_sets folder).")],
    unlabelled: Annotated[bool, typer.Option("--unlabelled", help="Ignore the sub-folder names: every chip is "
                                             "unlabelled (distillation terms only).")] = False,
) -> None:
    """Turn aligned chips into a training chip set with dlib teacher embeddings (the shared sets' format)."""
    from atalaia.face.makeset import make_chip_set

    try:
        s = make_chip_set(src, dst, unlabelled=unlabelled, progress=True)
    except ImportError as e:
        raise AtalaiaError(str(e)) from None
    console.print(f"{s.chips} chips: {s.labelled} labelled ({s.identities} identities), {s.unlabelled} unlabelled; "
                  f"{s.embedded} embedded with dlib, {s.chips - s.embedded} from the cache"
                  + (f"; {len(s.skipped)} unreadable (listed in {dst / 'make_set_failed.txt'})" if s.skipped else ""))
    console.print(f"use it with: --set 'face.train_sets=[..., {dst.resolve()}]'")


access_app = typer.Typer(no_args_is_help=True, help="Face access control with a face run's int8 model: "
                         "enrol people, check a face at the door, list, remove. State: STATE/access.db (SQLite) "
                         "or --db postgresql://...; the service `atalaia serve` uses the same store.")
app.add_typer(access_app, name="access")
_RunArg = Annotated[Path, typer.Argument(help="A finished face-verification run folder (recipes/lfw.yaml).")]
_StateOpt = Annotated[Path | None, typer.Option("--state", help="Gallery + event log folder (default RUN/access).")]
_AlignedOpt = Annotated[bool, typer.Option("--aligned", help="Images are 112x112 chips from `atalaia align`.")]
_DetectorOpt = Annotated[Path | None, typer.Option(
    "--detector", help="A finished detection run (recipes/detection.yaml): images are camera frames (grey or RGB, "
    "any size) -> int8 detector -> largest face -> 5-point alignment, the device's path.")]
_AlignOpt = Annotated[str | None, typer.Option(
    "--align", help="'dlib': detect and align with dlib on the host (fallback; as the training chips were made).")]
_RuntimeOpt = Annotated[str, typer.Option(help="litert (default) or tflm (both models in the device's interpreter).")]
_DbOpt = Annotated[str | None, typer.Option("--db", help="Database URL (default sqlite:///STATE/access.db; "
                                            "postgresql://USER:PW@HOST:PORT/DB for several doors).")]


def _access(run_dir: Path, state: Path | None, aligned: bool = False, threshold: str = "open_far_1e-2",
            db: str | None = None, detector: Path | None = None, align: str | None = None, runtime: str = "litert",
            images: bool = False):
    """The app; with `images`, one of --aligned / --detector / --align dlib must say how faces are found."""
    _import_tensorflow()
    from atalaia.face.access import AccessControl

    if align not in (None, "dlib"):
        raise AtalaiaError(f"--align must be 'dlib' (the host fallback), got '{align}'")
    picked = [n for n, on in (("--aligned", aligned), ("--detector", detector), ("--align dlib", align)) if on]
    if images and len(picked) != 1:
        raise AtalaiaError("say how faces are found: --detector RUN (camera frames, the device's path), --aligned "
                           "(chips from `atalaia align`) or --align dlib (host fallback)"
                           + (f"; got {' and '.join(picked)}" if picked else ""))
    ac = AccessControl(run_dir, state_dir=state, aligned=aligned, threshold=threshold, db=db, detector=detector,
                       runtime=runtime)
    if ac.imported:
        err_console.print(f"imported the old gallery.json/events.jsonl into the store ({ac.imported}); the files "
                          "were deleted", highlight=False)
    return ac


@access_app.command("enrol")
def access_enrol(run_dir: _RunArg, name: Annotated[str, typer.Argument(help="The person's name.")],
                 images: Annotated[list[Path], typer.Argument(help="Photos (or chips with --aligned).")],
                 state: _StateOpt = None, aligned: _AlignedOpt = False, db: _DbOpt = None,
                 detector: _DetectorOpt = None, align: _AlignOpt = None, runtime: _RuntimeOpt = "litert") -> None:
    """Enrol a person: one template per photo with a face (enrol with the alignment you check with)."""
    res = _access(run_dir, state, aligned, db=db, detector=detector, align=align, runtime=runtime,
                  images=True).enrol(name, images)
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
                 )] = "open_far_1e-2", db: _DbOpt = None, detector: _DetectorOpt = None,
                 align: _AlignOpt = None, runtime: _RuntimeOpt = "litert") -> None:
    """Recognise each image and decide. Exit status: 0 every image granted, 1 at least one refused (no match,
    unreadable), 3 no face found in at least one image (and none refused otherwise)."""
    ac = _access(run_dir, state, aligned, threshold, db, detector=detector, align=align, runtime=runtime,
                 images=True)
    if ac.warning:
        err_console.print(f"warning: {ac.warning}", highlight=False)
    refused = no_face = 0
    for im in images:
        d = ac.check(im)
        face_missing = d.faces == 0 and d.reason.startswith("no face")
        no_face += face_missing
        refused += not d.granted and not face_missing
        verdict = "[green]GRANTED[/]" if d.granted else ("[yellow]NO FACE[/]" if face_missing else "[red]REFUSED[/]")
        who = f"{d.person} (cosine {d.score:.3f}, threshold {d.threshold:.3f})" if d.person else d.reason
        console.print(f"{verdict} {im}: {who}", highlight=False)
        if d.box is not None:
            x1, y1, x2, y2 = d.box
            steps = ", ".join(f"{k} {v:.1f}" for k, v in (d.timings_ms or {}).items())
            console.print(f"  face ({x1:.0f}, {y1:.0f})-({x2:.0f}, {y2:.0f}) detector score {d.det_score:.2f}, "
                          f"{d.faces} face(s) found, the largest used; ms ({ac.runtime}): {steps}", highlight=False)
    raise typer.Exit(1 if refused else (3 if no_face else 0))


@access_app.command("list")
def access_list(run_dir: _RunArg, state: _StateOpt = None, db: _DbOpt = None) -> None:
    """Who is enrolled, with template counts."""
    people = _access(run_dir, state, db=db).people
    console.print("\n".join(f"{n}: {k} template(s)" for n, k in people.items()) or "nobody is enrolled")


@access_app.command("remove")
def access_remove(run_dir: _RunArg, name: Annotated[str, typer.Argument(help="The person to forget.")],
                  state: _StateOpt = None, db: _DbOpt = None) -> None:
    """Forget a person: templates, kept photos, and their name and images on past events."""
    n = _access(run_dir, state, db=db).remove(name)
    console.print(f"{name}: {n} template(s) removed")


@app.command("serve")
def serve(run_dir: _RunArg,
          db: _DbOpt = None,
          host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1 = this machine only).")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
          mqtt: Annotated[str | None, typer.Option(help="MQTT broker, mqtt://[USER:PW@]HOST[:PORT]: events on "
                                                  "atalaia/<door>/event, Home Assistant discovery.")] = None,
          webhook: Annotated[str | None, typer.Option(help="URL that gets every event as a JSON POST.")] = None,
          door: Annotated[list[str] | None, typer.Option(help="Door name(s) sharing the gallery; the first is the "
                                                        "page's. Repeat for several.")] = None,
          keep_photos: Annotated[bool, typer.Option("--keep-photos", help="Keep enrolment photos and the first "
                                                    "frame of each decision in the database (biometric data).")] = False,
          threshold: Annotated[str, typer.Option(help="As for `atalaia access check`.")] = "open_far_1e-2",
          aligned: _AlignedOpt = False,
          detector: _DetectorOpt = None,
          runtime: Annotated[str, typer.Option(help="litert (default) or tflm (the device's interpreter).")] = "litert",
          recognise_rate: Annotated[float, typer.Option(help="Recognition requests per second allowed per client "
                                                        "address and door (bursts of 4x, at least 20).")] = 5.0,
          admin_password_file: Annotated[Path | None, typer.Option(
              help="File with the admin password (or set ATALAIA_ADMIN_PASSWORD); random and printed once if "
                   "neither is given on a new store.")] = None) -> None:
    """The door-access web service: page + API (enrol, recognise, door mode, people, log, model card), MQTT."""
    _import_tensorflow()
    from atalaia.serve.app import ServeConfig, first_start_secrets, run_server

    pw = os.environ.get("ATALAIA_ADMIN_PASSWORD")
    if admin_password_file is not None:
        if not admin_password_file.is_file():
            raise AtalaiaError(f"--admin-password-file {admin_password_file} does not exist")
        pw = admin_password_file.read_text().strip()
    doors = door or ["door"]
    cfg = ServeConfig(run_dir=run_dir, db=db, door=doors[0], extra_doors=tuple(doors[1:]), threshold=threshold,
                      aligned=aligned, detector=detector, runtime=runtime, keep_photos=keep_photos, mqtt_url=mqtt, webhook_url=webhook,
                      admin_password=pw, door_token=os.environ.get("ATALAIA_DOOR_TOKEN"),
                      recognise_rate=recognise_rate, recognise_burst=max(20, int(4 * recognise_rate)))
    cfg, msgs = first_start_secrets(cfg)
    for m in msgs:
        err_console.print(m, highlight=False)
    err_console.print(f"serving {run_dir} on http://{host}:{port}/ (door {', '.join(doors)})", highlight=False)
    run_server(cfg, host, port)


from atalaia.tune.cli import tune_command  # noqa: E402  (light: atalaia.tune loads its modules on first use)

app.command(name="tune")(tune_command)


def _one_line(message: str) -> str:
    """The promised single line: a newline or control character echoed from the user's input is escaped, and
    rich markup in it is shown as typed."""
    from rich.markup import escape

    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)
    return escape(text)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our own warnings (e.g. a Pillow remark about one image file) as one `warning:` line; others as usual."""
    if issubclass(category, AtalaiaWarning):
        err_console.print(f"[yellow]warning:[/] {_one_line(str(message))}", highlight=False, soft_wrap=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


def main() -> None:
    warnings.showwarning = _show_warning
    try:
        app()
    except AtalaiaError as e:
        err_console.print(f"[red]error:[/] {_one_line(str(e))}", highlight=False, soft_wrap=True, markup=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted; finished stages are kept, run again to resume")
        sys.exit(130)
    except SystemExit as e:
        if e.code == 130:  # typer's answer to Ctrl-C before any work started: say so instead of nothing
            err_console.print("interrupted; nothing was started")
        raise


if __name__ == "__main__":
    main()
