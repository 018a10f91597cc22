"""The CLI turns user mistakes into one-line errors with exit code 2 and no traceback."""

import subprocess
import sys
from pathlib import Path

import pytest


def _atalaia(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "atalaia.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def _assert_user_error(p: subprocess.CompletedProcess, *needles: str) -> None:
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    err = p.stderr.strip()
    assert err.startswith("error:"), err
    for n in needles:
        assert n in err, err


def test_unknown_recipe_key(tmp_path):
    (tmp_path / "r.yaml").write_text("train: {epocs: 3}\n")
    _assert_user_error(_atalaia("run", "r.yaml", cwd=tmp_path), "unknown key 'epocs'", "did you mean 'epochs'")


def test_bad_override(tmp_path):
    _assert_user_error(_atalaia("run", "--set", "distill.alpha=7", cwd=tmp_path), "distill.alpha")


def test_missing_dataset_folder(tmp_path):
    (tmp_path / "r.yaml").write_text("data: {root: no_such_folder}\n")
    _assert_user_error(_atalaia("run", "r.yaml", cwd=tmp_path), "dataset folder not found", "no_such_folder")


def test_identity_with_too_few_images_and_unreadable_image(tiny_faces, tmp_path):
    (tmp_path / "r.yaml").write_text(f"data: {{root: {tiny_faces}, image_size: [16, 16]}}\n")
    bad = tiny_faces / "person_00" / "0.png"
    bad.write_bytes(b"garbage")
    _assert_user_error(_atalaia("run", "r.yaml", cwd=tmp_path), "cannot read image", "0.png")
    for f in sorted((tiny_faces / "person_01").iterdir())[1:]:
        f.unlink()
    bad.unlink()
    _assert_user_error(_atalaia("run", "r.yaml", cwd=tmp_path), "identity 'person_01'")


def test_report_and_export_need_a_run(tmp_path):
    _assert_user_error(_atalaia("report", str(tmp_path), cwd=tmp_path), "no report.json")
    _assert_user_error(_atalaia("export", str(tmp_path), cwd=tmp_path), "no finished int8 stage")


@pytest.mark.slow
def test_targets_lists_calibration(tmp_path):
    p = _atalaia("targets", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "esp32s3" in p.stdout and "person_detect" in p.stdout


def test_align_counts_faces_and_failures(tmp_path):
    fixtures = Path(__file__).parent / "fixtures" / "faces"
    orl = sorted((fixtures / "orl").rglob("*.pgm"))[0]
    src = tmp_path / "src" / "alice"
    src.mkdir(parents=True)
    (src / "a.pgm").write_bytes(orl.read_bytes())
    (src / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    p = _atalaia("align", str(tmp_path / "src"), str(tmp_path / "chips"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "2 images: 1 aligned" in p.stdout and "1 unreadable" in p.stdout
    assert (tmp_path / "chips" / "alice" / "a.jpg").is_file()
    assert "broken.jpg" in (tmp_path / "chips" / "failed.txt").read_text()


def test_make_set_on_photos_instead_of_chips_says_to_align_first(tmp_path):
    orl = Path(__file__).parent / "fixtures" / "faces" / "orl" / "s1_1.pgm"
    (tmp_path / "photos" / "alice").mkdir(parents=True)
    (tmp_path / "photos" / "alice" / "1.pgm").write_bytes(orl.read_bytes())
    p = _atalaia("make-set", str(tmp_path / "photos"), str(tmp_path / "set"), cwd=tmp_path)
    _assert_user_error(p, "1.pgm: 92x112 is not an aligned face chip", "atalaia align")
