"""The `detection:` recipe section: defaults, validation with one-line errors, paths saved absolute."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from atalaia.config import dump_recipe, load_recipe
from atalaia.errors import RecipeError

RECIPE = Path(__file__).resolve().parents[1] / "src" / "atalaia" / "recipes" / "detection.yaml"


def test_detection_recipe_loads_and_saves_absolute_frames_root():
    r = load_recipe(RECIPE)
    assert r.task == "detection" and r.detection.landmarks == "lm5"
    assert 96 * 96 <= r.data.image_size[0] * r.data.image_size[1] <= 160 * 120
    saved = yaml.safe_load(dump_recipe(r))
    assert Path(saved["detection"]["frames_root"]).is_absolute()


@pytest.mark.parametrize("overrides,match", [
    ({"detection.frames_root": ""}, "detection.frames_root"),
    ({"data.image_size": [100, 96]}, "multiples of 8"),
    ({"data.channels": 3}, "channels 1"),
    ({"detection.score_threshold": 0.01}, "eval_threshold"),
    ({"detection.nms_iou": 1.5}, "nms_iou"),
    ({"detection.nms": 0.5}, "did you mean 'nms_iou'"),
])
def test_detection_recipe_errors_name_the_field(overrides, match):
    with pytest.raises(RecipeError, match=match):
        load_recipe(RECIPE, overrides)
