from pathlib import Path

import pytest

from atalaia.config import Recipe, dump_recipe, load_recipe
from atalaia.errors import RecipeError


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_default_recipe_loads_and_round_trips(tmp_path):
    r = load_recipe()
    assert r.name == "default"
    assert r.data.image_size == (32, 32)
    again = load_recipe(_write(tmp_path, dump_recipe(r)))
    assert again.to_dict() == r.to_dict()


def test_unknown_key_names_key_and_nearest(tmp_path):
    with pytest.raises(RecipeError, match=r"unknown key 'temprature'.*did you mean 'temperature'"):
        load_recipe(_write(tmp_path, "distill: {temprature: 5}\n"))


def test_unknown_top_level_key(tmp_path):
    with pytest.raises(RecipeError, match=r"unknown key 'studnet'.*'student'"):
        load_recipe(_write(tmp_path, "studnet: {name: ds_cnn}\n"))


@pytest.mark.parametrize("text,msg", [
    ("distill: {alpha: 1.5}\n", "distill.alpha"),
    ("train: {epochs: 0}\n", "train.epochs"),
    ("data: {split: [0.5, 0.5, 0.5]}\n", "data.split"),
    ("train: {epochs: 2.5}\n", "expected an integer"),
    ("prune: {channel: {criterion: random}}\n", "criterion"),
    ("data: {image_size: [32]}\n", "expected 2 values"),
    ("face: {sampling: weighted}\n", "face.sampling must be uniform or balanced"),
])
def test_invalid_values_are_named(tmp_path, text, msg):
    with pytest.raises(RecipeError, match=msg):
        load_recipe(_write(tmp_path, text))


def test_overrides_apply_and_validate(tmp_path):
    r = load_recipe(None, {"train.epochs": 3, "student.width": 0.25})
    assert r.train.epochs == 3 and r.student.width == 0.25
    with pytest.raises(RecipeError):
        load_recipe(None, {"train.epoch": 3})


def test_relative_data_root_resolves_next_to_recipe(tmp_path):
    r = load_recipe(_write(tmp_path, "data: {root: myfaces}\n"))
    assert r.data_root() == (tmp_path / "myfaces").resolve()


def test_section_hash_changes_only_with_its_section():
    a = Recipe()
    b = Recipe.from_dict({"distill": {"alpha": 0.5}})
    assert a.section_hash("data", "train") == b.section_hash("data", "train")
    assert a.section_hash("distill") != b.section_hash("distill")


def test_missing_recipe_file():
    with pytest.raises(RecipeError, match="not found"):
        load_recipe("/nonexistent/recipe.yaml")


def test_saved_recipe_has_absolute_data_paths(tmp_path):
    (tmp_path / "faces").mkdir()
    src = _write(tmp_path, "task: verification\ndata: {root: faces, image_size: [32, 32], channels: 1}\n"
                           "face: {train_sets: [faces], lfw_root: lfw}\n")
    r = load_recipe(src)
    text = dump_recipe(r)
    other = tmp_path / "elsewhere"
    other.mkdir()
    again = load_recipe(_write(other, text))
    assert again.data_root() == r.data_root() == (tmp_path / "faces").resolve()
    assert again.face.train_sets == (str((tmp_path / "faces").resolve()),)
    assert again.face.lfw_root == str((tmp_path / "lfw").resolve()) and again.face.cache_dir == ""


def test_face_loss_section_and_its_flat_spelling(tmp_path):
    """`face.loss` is the student's training spec; the flat keys of older recipes land in it; both at once is
    a mistake that names the key."""
    from atalaia.config import FaceLossConfig, load_recipe
    from atalaia.errors import RecipeError

    flat = tmp_path / "flat.yaml"
    flat.write_text("face: {kd_weight: 3.0, margin: arcface}\n")
    nested = tmp_path / "nested.yaml"
    nested.write_text("face: {loss: {kd_weight: 3.0, margin: arcface}}\n")
    assert load_recipe(flat).face.loss == load_recipe(nested).face.loss == FaceLossConfig(kd_weight=3.0, margin="arcface")
    assert load_recipe(nested, {"face.kd_weight": 5.0}).face.loss.kd_weight == 5.0  # --set with the flat spelling
    both = tmp_path / "both.yaml"
    both.write_text("face: {kd_weight: 3.0, loss: {kd_weight: 2.0}}\n")
    with pytest.raises(RecipeError, match="'kd_weight' is given both flat and under face.loss"):
        load_recipe(both)
