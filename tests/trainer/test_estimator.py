"""`from trainer import DBN`: nolearn's constructor, scikit-learn's methods, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.trainer.trainer_fixtures import dataset, one_blas_thread  # noqa: F401 - fixture
from trainer import DBN
from trainer.errors import DataError, JobError

pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module")
def fitted() -> DBN:
    data = dataset("digits")
    return DBN([64, 100, 10], learn_rates=0.3, epochs=20, backend="numpy").fit(data.X_train, data.y_train)


def test_fit_predict_score(fitted: DBN) -> None:
    data = dataset("digits")
    proba = fitted.predict_proba(data.X_test)
    assert proba.shape == (594, 10) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    pred = fitted.predict(data.X_test)
    assert np.array_equal(pred, proba.argmax(axis=1))
    assert fitted.score(data.X_test, data.y_test) == np.mean(pred == data.y_test) > 0.85
    assert len(fitted.losses_fine_tune_) == len(fitted.errors_fine_tune_) == 20
    assert fitted.errors_pretrain_ == [] and fitted.n_features_in_ == 64
    assert list(fitted.classes_) == list(range(10))


def test_save_and_load_round_trip(fitted: DBN, tmp_path: Path) -> None:
    data = dataset("digits")
    fitted.save(tmp_path / "model.npz")
    loaded = DBN.load(tmp_path / "model.npz", backend="numpy")
    assert np.array_equal(loaded.predict_proba(data.X_test), fitted.predict_proba(data.X_test))
    assert loaded.learn_rates == [0.3, 0.3] and loaded.epochs == 20 and loaded.layer_sizes == [64, 100, 10]
    assert loaded.losses_fine_tune_ == fitted.losses_fine_tune_


def test_string_labels_map_to_classes() -> None:
    data = dataset("digits")
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    clf = DBN([64, 50, 10], learn_rates=0.3, epochs=20, backend="numpy").fit(
        data.X_train, names[data.y_train]
    )
    assert sorted(clf.classes_) == sorted(names)
    assert clf.score(data.X_test, names[data.y_test]) > 0.8
    assert set(clf.predict(data.X_test[:20])) <= set(names)


def test_scikit_learn_protocol_works_with_clone_and_cross_val_score() -> None:
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    data = dataset("digits")
    clf = DBN([64, 30, 10], learn_rates=0.3, epochs=10, backend="numpy")
    assert clf.get_params()["learn_rates"] == 0.3
    twin = clone(clf).set_params(epochs=5)
    assert twin.epochs == 5 and clf.epochs == 10
    scores = cross_val_score(clf, data.X_train[:600], data.y_train[:600], cv=2)  # fits clones of clf
    assert scores.shape == (2,) and ((scores >= 0) & (scores <= 1)).all()
    assert not hasattr(clf, "net_")  # cross_val_score fitted clones, not clf
    assert repr(clf) == "DBN([64, 30, 10], learn_rates=0.3, backend='numpy')"  # defaults left out


def test_same_seed_same_model_other_seed_other_model() -> None:
    data = dataset("digits")
    X, y = data.X_train[:320], data.y_train[:320]
    a = DBN([64, 20, 10], epochs=2, backend="numpy").fit(X, y)
    b = DBN([64, 20, 10], epochs=2, backend="numpy").fit(X, y)
    c = DBN([64, 20, 10], epochs=2, seed=7, backend="numpy").fit(X, y)
    assert all(np.array_equal(p, q) for p, q in zip(a.net_.weights, b.net_.weights, strict=True))
    assert not np.array_equal(a.net_.weights[0], c.net_.weights[0])


@pytest.mark.parametrize(
    ("kwargs", "X", "y", "error", "message"),
    [
        (
            {"learn_rates": "fast"},
            None,
            None,
            JobError,
            "learn_rates: expected a number > 0 or a list of 1 number",
        ),
        ({"layer_sizes": [64]}, None, None, JobError, "layer_sizes: expected a list of at least 2"),
        (
            {},
            np.zeros((10, 63)),
            np.zeros(10, int),
            DataError,
            "X has 63 features but the network's input layer",
        ),
        (
            {},
            np.zeros((10, 64)),
            np.zeros(9, int),
            DataError,
            "y must be 1-D with one label per row of X (10)",
        ),
        ({}, np.full((10, 64), np.nan), np.zeros(10, int), DataError, "X contains NaN"),
        ({}, np.zeros((10, 64)), np.arange(10) * 10, DataError, None),  # 10 classes fit, as sorted labels
        (
            {},
            np.zeros((12, 64)),
            np.arange(12),
            DataError,
            "y has 12 classes but the output layer has 10 units",
        ),
    ],
)
def test_bad_input_raises_our_errors(kwargs: dict, X, y, error: type, message: str | None) -> None:  # type: ignore[no-untyped-def]
    params = {"layer_sizes": [64, 10], "epochs": 1, "minibatch_size": 4, "backend": "numpy", **kwargs}
    clf = DBN(**params)
    X = np.zeros((8, 64)) if X is None else X
    y = np.zeros(8, int) if y is None else y
    if message is None:
        clf.fit(X, y)
        assert list(clf.classes_) == list(range(0, 100, 10))
        return
    with pytest.raises(error) as err:
        clf.fit(X, y)
    assert str(err.value).startswith(message), str(err.value)


def test_unfitted_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(JobError, match="not fitted yet"):
        DBN([64, 10]).predict(np.zeros((1, 64)))
    np.savez(tmp_path / "other.npz", W0=np.zeros((2, 2)))
    with pytest.raises(DataError, match="not a trainer model"):
        DBN.load(tmp_path / "other.npz")
    with pytest.raises(DataError, match="no such model file"):
        DBN.load(tmp_path / "missing.npz")
