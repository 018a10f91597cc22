"""What is checked before TensorFlow: the output folder, the data, and recipe numbers."""

from __future__ import annotations

import dataclasses

import pytest

from atalaia.config import Recipe, load_recipe
from atalaia.errors import AtalaiaError, DataError, RecipeError
from atalaia.preflight import check_data, check_out_dir, preflight


def test_out_dir_checks_create_nothing(tmp_path):
    check_out_dir(tmp_path / "a" / "b" / "c")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("x")
    with pytest.raises(AtalaiaError, match="is a file, not a folder"):
        check_out_dir(tmp_path / "f")
    with pytest.raises(AtalaiaError, match="so no folder can be made under it"):
        check_out_dir(tmp_path / "f" / "x" / "y")


def test_closed_set_data_summary_and_limits(tiny_faces, tmp_path):
    r = load_recipe(_write(tmp_path, f"data: {{root: {tiny_faces}, image_size: [16, 16]}}\n"))
    assert preflight(r, tmp_path / "run") == f"32 images under {tiny_faces}"
    small = dataclasses.replace(r, data=dataclasses.replace(r.data, max_image_pixels=100))
    with pytest.raises(DataError, match=r"0\.png' declares 24x24 = 576 pixels, more than data.max_image_pixels"):
        check_data(small)


def test_verification_recipe_folders(tmp_path):
    (tmp_path / "chips").mkdir()
    r = load_recipe(_write(tmp_path, "task: verification\ndata: {image_size: [64, 64]}\n"
                                     "face: {train_sets: [chips], lfw_root: lfw}\n"))
    with pytest.raises(DataError, match="face.lfw_root: folder not found"):
        check_data(r)
    (tmp_path / "lfw").mkdir()
    with pytest.raises(DataError, match=r"face.pairs: pairs file not found: '.*lfw/pairs.txt'"):
        check_data(r)
    (tmp_path / "lfw" / "pairs.txt").write_text("10\t300\n")
    assert "1 chip set(s)" in check_data(r)


def test_max_image_pixels_does_not_change_stage_keys(tmp_path):
    """Adding a refusal threshold must not re-run anyone's finished stages."""
    a = Recipe()
    b = dataclasses.replace(a, data=dataclasses.replace(a.data, max_image_pixels=123456))
    assert a.section_hash("data", "train", "seed") == b.section_hash("data", "train", "seed")
    c = dataclasses.replace(a, data=dataclasses.replace(a.data, image_size=(40, 40)))
    assert a.section_hash("data") != c.section_hash("data")


@pytest.mark.parametrize("text, needle", [
    ("train: {learning_rate: .inf}", "expected a finite number"),
    ("distill: {alpha: .nan}", "expected a finite number"),
    ("train: {weight_decay: -1}", "train.weight_decay must be >= 0"),
    ("evaluate: {latency_runs: 0}", "evaluate.latency_runs must be >= 1"),
    ("prune: {magnitude: {begin_fraction: 0.8, end_fraction: 0.5}}", "begin_fraction < end_fraction"),
    ("data: {image_size: [100000, 100000]}", "8 <= H, W <= 1024"),
    ("name: ''", "name must be"),
])
def test_numbers_and_names(tmp_path, text, needle):
    with pytest.raises(RecipeError, match=needle.replace("[", r"\[").replace(".", r"\.")):
        load_recipe(_write(tmp_path, text + "\n"))


def _write(tmp_path, text: str):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p
