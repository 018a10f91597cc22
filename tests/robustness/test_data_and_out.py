"""Bad output folders and bad datasets: one line naming the path, exit 2, before TensorFlow is imported and
before a run folder exists; pixel-level damage found later still leaves no run folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image


def _faces(root: Path, ids: int = 3, per: int = 3, size: int = 16) -> Path:
    for i in range(ids):
        (root / f"p{i}").mkdir(parents=True)
        for j in range(per):
            Image.new("L", (size, size), 50 * i + 10 * j).save(root / f"p{i}" / f"{j}.png")
    return root


def _recipe(tmp: Path, data_root: Path, extra: str = "") -> Path:
    p = tmp / "r.yaml"
    p.write_text(f"name: t\ndata: {{root: {data_root}, image_size: [16, 16]{extra}}}\n")
    return p


# ------------------------------------------------------------------------------------------- output folder
def _out_cases(tmp: Path) -> list[tuple[str, Path, str]]:
    (tmp / "afile").write_text("x")
    os.symlink(tmp / "nowhere" / "deeper", tmp / "dangling")
    return [
        ("a file", tmp / "afile", "is a file, not a folder"),
        ("under a file", tmp / "afile" / "run", "is a file, so no folder can be made under it"),
        ("deep under a file", tmp / "afile" / "a" / "b", "is a file"),
        ("not writable (/proc)", Path("/proc/atalaia-run"), "is not writable"),
        ("not writable (/sys, read-only)", Path("/sys/atalaia-run"), "is not writable"),
        ("dangling symlink", tmp / "dangling" / "run", "broken symbolic link"),
    ]


def test_bad_out_dirs(tmp_path, kit):
    recipe = _recipe(tmp_path, _faces(tmp_path / "faces"))
    for name, out, needle in _out_cases(tmp_path):
        kit.count()
        o = kit.invoke("run", str(recipe), "--out", str(out))
        line = kit.assert_one_line_error(o, needle, str(out))
        assert name and line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "dangling", "faces", "r.yaml"]


def test_unwritable_folder_is_found_by_trying(tmp_path, kit, monkeypatch):
    """Permission bits lie for root (CI runs as root): the check creates and removes a file. Simulate a
    refusal where a non-root user would meet it."""
    import tempfile

    recipe = _recipe(tmp_path, _faces(tmp_path / "faces"))
    locked = tmp_path / "locked"
    locked.mkdir()
    real = tempfile.mkstemp

    def refuse(*a, **k):
        if Path(k.get("dir", "")) == locked:
            raise PermissionError(13, "Permission denied")
        return real(*a, **k)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    kit.count()
    kit.assert_one_line_error(kit.invoke("run", str(recipe), "--out", str(locked / "run")),
                              "is not writable (Permission denied", out_dir=locked / "run")
    assert list(locked.iterdir()) == []


# ------------------------------------------------------------------------------------------- datasets
def _bad_image_cases(kit) -> list[tuple[str, bytes, str]]:
    good = (Path(__file__).parents[1] / "fixtures" / "faces" / "orl" / "s1_1.pgm").read_bytes()
    return [
        ("zero bytes", b"", "cannot read image"),
        ("garbage", b"not an image at all", "cannot read image"),
        ("truncated header", kit.png_declaring(16, 16)[:20], "cannot read image"),
        ("14000x14000 PNG of 100 bytes", kit.png_declaring(14000, 14000), "declares 196,000,000 pixels"),
        ("12000x12000 PNG", kit.png_declaring(12000, 12000), "declares 12000x12000 = 144,000,000 pixels"),
        ("60000x1 PNG over a small limit", kit.png_declaring(60000, 1), "more than data.max_image_pixels"),
        ("0x0 PNG", kit.png_declaring(0, 0), "cannot read image"),
        ("PGM cut in its header", good[:5], "cannot read image"),
        ("text with an image name", b"P5\n# only a comment\n", "cannot read image"),
    ]


def test_bad_images_named_before_any_work(tmp_path, kit):
    for k, (name, blob, needle) in enumerate(_bad_image_cases(kit)):
        case = tmp_path / f"c{k}"
        root = _faces(case / "faces")
        bad = root / "p1" / "bad.png"
        bad.write_bytes(blob)
        extra = ", max_image_pixels: 50000" if "small limit" in name else ""
        out = case / "out"
        kit.count()
        o = kit.invoke("run", str(_recipe(case, root, extra)), "--out", str(out))
        kit.assert_one_line_error(o, needle, "bad.png", out_dir=out)


def test_dataset_layout_mistakes(tmp_path, kit):
    cases = []
    a = _faces(tmp_path / "few")
    for f in sorted((a / "p2").iterdir())[1:]:
        f.unlink()
    cases.append((a, "identity 'p2'"))
    b = tmp_path / "flat"
    b.mkdir()
    Image.new("L", (8, 8)).save(b / "x.png")
    cases.append((b, "no identity sub-folders"))
    c = _faces(tmp_path / "one", ids=1)
    cases.append((c, "has 1 identity"))
    cases.append((tmp_path / "missing", "dataset folder not found"))
    (tmp_path / "file").write_text("x")
    cases.append((tmp_path / "file", "dataset folder not found"))
    d = _faces(tmp_path / "loop")
    os.symlink(d / "p0" / "loop", d / "p0" / "loop")  # a symlink to itself
    os.symlink(d / "p1", d / "p1" / "up.png")  # a folder link named like an image
    for k, (root, needle) in enumerate(cases):
        out = tmp_path / f"out{k}"
        kit.count()
        kit.assert_one_line_error(kit.invoke("run", str(_recipe(tmp_path, root)), "--out", str(out)), needle,
                                  out_dir=out)
    o = kit.invoke("run", str(_recipe(tmp_path, d)), "--out", str(tmp_path / "outloop"), "--check")
    assert o.code == 0, o.stderr  # links that are not image files are ignored, not a crash


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=64),
                 st.builds(lambda w, h, cut: _png(w, h)[:cut], st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1),
                           st.integers(0, 80))))
def test_random_image_bytes(tmp_path_factory, kit, blob):
    """Whatever bytes sit in an image file: accepted by its header (decoded later) or refused naming it."""
    case = tmp_path_factory.mktemp("rnd")
    root = _faces(case / "faces")
    (root / "p0" / "odd.png").write_bytes(blob)
    out = case / "out"
    o = kit.invoke("run", str(_recipe(case, root)), "--out", str(out))
    kit.count(1, refused=int(o.code == 2))
    assert o.code in (0, 2), o.stderr
    if o.code == 2:
        kit.assert_one_line_error(o, "odd.png", out_dir=out)


def _png(w: int, h: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 8)) + chunk(b"IEND", b""))


# ------------------------------------------------------------------------------------------- as a user runs it
def _cli(args: list[str], cwd: Path, **kw) -> subprocess.Popen:
    code = ("import sys, atalaia.cli as c\nsys.argv = ['atalaia', *sys.argv[1:]]\n"
            "try:\n    c.main()\nfinally:\n    print('TF imported' if 'tensorflow' in sys.modules else 'no TF')\n")
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_data_error_arrives_fast_without_tensorflow(tmp_path, kit):
    root = _faces(tmp_path / "faces")
    (root / "p1" / "bomb.png").write_bytes(kit.png_declaring(14000, 14000))
    t0 = time.perf_counter()
    p = _cli(["run", str(_recipe(tmp_path, root))], tmp_path)
    out, err = p.communicate(timeout=60)
    seconds = time.perf_counter() - t0
    kit.count()
    assert p.returncode == 2 and err.count("\n") == 1 and "bomb.png" in err, err
    assert "no TF" in out
    assert seconds < 3.0, f"data error took {seconds:.1f} s"
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_pixel_damage_found_while_loading_leaves_no_run_folder(tmp_path, kit):
    """A file whose header is fine but whose pixels are cut off is only found when decoded, after TensorFlow
    is imported: still one line, exit 2, and the run folder the pipeline had made is gone."""
    root = _faces(tmp_path / "faces")
    Image.new("L", (64, 64), 7).save(tmp_path / "whole.png", compress_level=0)
    blob = (tmp_path / "whole.png").read_bytes()
    (root / "p2" / "cut.png").write_bytes(blob[: len(blob) // 2])
    p = _cli(["run", str(_recipe(tmp_path, root)), "--out", str(tmp_path / "run")], tmp_path)
    out, err = p.communicate(timeout=300)
    kit.count()
    assert p.returncode == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "cut.png" in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_ctrl_c_stops_within_two_seconds_and_says_what_is_kept(tmp_path):
    root = _faces(tmp_path / "faces", ids=4, per=6)
    recipe = _recipe(tmp_path, root)
    recipe.write_text(recipe.read_text() + "train: {epochs: 500, batch_size: 4}\n")
    p = _cli(["run", str(recipe), "--out", str(tmp_path / "run")], tmp_path)
    assert p.stdout is not None
    for line in p.stdout:
        if "[teacher] running" in line:
            break
    time.sleep(6.0)  # past the first batch's graph compilation: a clean stop between batches
    assert p.poll() is None, "the run ended before it could be interrupted"
    t0 = time.perf_counter()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    seconds = time.perf_counter() - t0
    assert p.returncode == 130, err
    assert "interrupted; finished stages are kept, run again to resume" in err
    assert "Traceback" not in err
    assert seconds < 2.0, f"Ctrl-C took {seconds:.1f} s"
    assert not (tmp_path / "run" / "teacher" / "DONE.json").exists()  # the interrupted stage is not trusted
    assert (tmp_path / "run" / "recipe.yaml").is_file()


def test_damaged_report_json(tmp_path, kit):
    for k, blob in enumerate([b"", b"{\"stages\": [", b"\xff\xfe\x00", b"null\x00", b"null", b"{\"stages\": 3}"]):
        d = tmp_path / f"r{k}"
        d.mkdir()
        (d / "report.json").write_bytes(blob)
        kit.count()
        kit.assert_one_line_error(kit.invoke("report", str(d)), "report.json' is not")


def test_pillow_warning_is_one_line_naming_the_file(tmp_path, kit):
    root = _faces(tmp_path / "faces")
    (root / "p0" / "apng.png").write_bytes(kit.png_with_warning())
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        o = kit.invoke("run", str(_recipe(tmp_path, root)), "--out", str(tmp_path / "out"), "--check")
    kit.count(1, refused=0)
    assert o.code == 0, o.stderr
    lines = o.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: image '") and "apng.png': Invalid APNG" in lines[0]
