import numpy as np
import pytest

from atalaia.evaluate.metrics import classification_metrics, confusion_matrix


def test_hand_computed_macro_f1():
    y = np.array([0, 0, 0, 1, 1, 2])
    p = np.array([0, 0, 1, 1, 1, 0])
    m = classification_metrics(y, p, 3)
    # class 0: P=2/3 R=2/3 F1=2/3; class 1: P=2/3 R=1 F1=0.8; class 2: P=0 R=0 F1=0
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0) / 3)
    assert m["confusion_matrix"].tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_confusion_matrix_counts_everything():
    y = np.random.default_rng(0).integers(0, 5, 100)
    p = np.random.default_rng(1).integers(0, 5, 100)
    cm = confusion_matrix(y, p, 5)
    assert cm.sum() == 100 and np.trace(cm) == int(np.sum(y == p))


def test_empty_input_rejected():
    with pytest.raises(ValueError):
        classification_metrics(np.array([]), np.array([]), 2)
