"""The tier recipes' students fit their tier (int8 flash, TFLM arena, MACs per face), checked without training."""

from __future__ import annotations

import pytest

from atalaia.config import PACKAGE_DIR, load_recipe
from atalaia.errors import RecipeError
from atalaia.face.budget import TIERS, check_tier, student_costs

RECIPES = PACKAGE_DIR / "recipes"


@pytest.mark.parametrize("name, tier", [("lfw_s", "S"), ("lfw_m", "M")])
def test_tier_recipe_student_fits_its_budget_untrained(name, tier):
    r = load_recipe(RECIPES / f"{name}.yaml")
    assert r.face.tier == tier
    c = check_tier(student_costs(r), r.face.tier)
    assert c["ok"], c
    assert c["macs_per_face"] == 2 * c["macs"]  # both recipes use mirror TTA: two inferences per face
    assert c["flash_bytes"] > 0.5 * c["params"]  # int8 weights really are in the .tflite (>= 1 byte per weight-ish)


def test_lfw_yaml_is_an_alias_of_tier_s_and_the_check_can_fail():
    assert load_recipe(RECIPES / "lfw.yaml") == load_recipe(RECIPES / "lfw_s.yaml")
    over = {"params": 1, "macs": 16_000_000, "inferences_per_face": 2, "macs_per_face": 32_000_000,
            "flash_bytes": 300_000, "arena_bytes": 100_000}
    c = check_tier(over, "S")
    assert (c["flash_ok"], c["arena_ok"], c["macs_per_face_ok"], c["ok"]) == (False, True, False, False)
    assert check_tier(over, "M")["ok"] and TIERS["M"].flash_bytes_max == 1024 * 1024
    with pytest.raises(RecipeError, match="face.tier"):
        check_tier(over, "L")
