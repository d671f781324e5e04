"""report.txt is scikit-learn's classification_report, character for character, written without sklearn."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.metrics import accuracy, classification_report

sk = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize(
    ("y_true", "y_pred"),
    [
        # realistic: 10 classes, mostly right
        (
            np.arange(1000) % 10,
            np.where(np.arange(1000) % 7 == 0, (np.arange(1000) + 3) % 10, np.arange(1000) % 10),
        ),
        # a class never predicted (precision 0/0 -> 0) and a class only predicted (recall 0/0 -> 0)
        (np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 3, 3])),
        # perfect, binary
        (np.array([0, 1, 1, 0]), np.array([0, 1, 1, 0])),
        # wide labels (names longer than "weighted avg" set the width)
        (np.array([1234567890123, 5, 5]), np.array([5, 5, 1234567890123])),
        # random
        (np.random.default_rng(0).integers(0, 12, 500), np.random.default_rng(1).integers(0, 12, 500)),
    ],
    ids=["mostly-right", "undefined-scores", "binary-perfect", "wide-names", "random-12"],
)
def test_same_text_as_scikit_learn(y_true: np.ndarray, y_pred: np.ndarray) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about the 0/0 scores it sets to 0
        expected = sk.classification_report(y_true, y_pred)
    assert classification_report(y_true, y_pred) == expected
    assert accuracy(y_true, y_pred) == sk.accuracy_score(y_true, y_pred)


def test_more_digits() -> None:
    y_true = np.random.default_rng(2).integers(0, 4, 300)
    y_pred = np.random.default_rng(3).integers(0, 4, 300)
    assert classification_report(y_true, y_pred, digits=4) == sk.classification_report(
        y_true, y_pred, digits=4
    )
