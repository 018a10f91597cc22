"""The tier recipes' students fit their tier (int8 flash, TFLM arena, MACs per face), checked without training."""

from __future__ import annotations

from pathlib import Path

import pytest

from atalaia.config import PACKAGE_DIR, load_recipe
from atalaia.errors import RecipeError
from atalaia.face.budget import TIERS, check_tier, get_tier, keras_macs, student_costs

RECIPES = PACKAGE_DIR / "recipes"
REPO = Path(__file__).resolve().parents[2]
TIER_RECIPES = [("lfw_s", "S"), ("lfw_m", "M")]


def _student(r):
    from atalaia.face.train import build_student

    return build_student(r.data.image_size[0], width=r.student.width, embedding_dim=r.face.embedding_dim,
                         name=r.student.name, head=r.face.student_head)


@pytest.mark.parametrize("name, tier", TIER_RECIPES)
def test_tier_recipe_student_macs_and_weights_fit_quickly(name, tier):
    """Seconds, no int8 conversion: MACs per face from the Keras graph, and int8 weights (>= 1 byte each) under
    the flash limit. The slow test below measures the .tflite and the TFLM arena."""
    r = load_recipe(RECIPES / f"{name}.yaml")
    t, m = get_tier(r.face.tier), _student(r)
    assert r.face.tier == tier and r.face.mirror_tta
    assert 2 * keras_macs(m) <= t.macs_per_face_max
    assert m.count_params() < t.flash_bytes_max


@pytest.mark.slow
@pytest.mark.parametrize("name, tier", TIER_RECIPES)
def test_tier_recipe_student_fits_its_budget_untrained(name, tier):
    r = load_recipe(RECIPES / f"{name}.yaml")
    c = check_tier(student_costs(r), r.face.tier)
    assert c["ok"], c
    assert c["macs_per_face"] == 2 * c["macs"] == 2 * keras_macs(_student(r))  # the quick count is the real one
    assert c["flash_bytes"] > c["params"]  # the int8 weights really are in the .tflite
    # the same architecture, trained, as measured by benchmarks/lfw.py: byte-identical sizes
    import json

    rows = json.loads((REPO / "benchmarks" / "results" / "lfw.json").read_text())["rows"]
    trained = next(x for x in rows if x["stage"] == "int8_tflm" and x.get("tier", "S") == tier)
    assert (c["flash_bytes"], c["arena_bytes"]) == (trained["flash_bytes"], trained["arena_bytes"])


def test_per_stage_widths_build_a_ds_cnn_with_those_channels():
    """`build_student(blocks=...)` (a width per stage, the round-2 probe) gives those pointwise widths; only
    ds_cnn takes them."""
    from keras import layers

    from atalaia.face.train import build_student

    blocks = ((8, 1), (16, 2), (48, 2))
    m = build_student(32, width=1.0, head="gap", blocks=blocks)
    pw = [lay.filters for lay in m.layers if isinstance(lay, layers.Conv2D) and lay.name.endswith("_pw")]
    assert pw == [8, 16, 48] and m.output.shape[-1] == 128
    with pytest.raises(RecipeError, match="ds_cnn"):
        build_student(32, name="ds_cnn_deep", head="gap", blocks=blocks)


def test_lfw_yaml_is_an_alias_of_tier_s_and_the_check_can_fail():
    assert load_recipe(RECIPES / "lfw.yaml") == load_recipe(RECIPES / "lfw_s.yaml")
    over = {"params": 1, "macs": 16_000_000, "inferences_per_face": 2, "macs_per_face": 32_000_000,
            "flash_bytes": 300_000, "arena_bytes": 100_000}
    c = check_tier(over, "S")
    assert (c["flash_ok"], c["arena_ok"], c["macs_per_face_ok"], c["ok"]) == (False, True, False, False)
    assert check_tier(over, "M")["ok"] and TIERS["M"].flash_bytes_max == 1024 * 1024
    with pytest.raises(RecipeError, match="face.tier"):
        check_tier(over, "L")
