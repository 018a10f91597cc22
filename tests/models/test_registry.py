from __future__ import annotations

import pytest

from atalaia.errors import RecipeError
from atalaia.models import available_models, create_model


@pytest.mark.parametrize("name", available_models())
def test_every_registered_model_builds_logits(name):
    m = create_model(name, num_classes=5, input_shape=(32, 32, 1), width=0.25)
    assert m.output_shape == (None, 5)


def test_unknown_model_suggests_the_nearest_name():
    with pytest.raises(RecipeError, match="did you mean 'ds_cnn_deep'"):
        create_model("ds_cnn_dep", num_classes=5, input_shape=(32, 32, 1))
