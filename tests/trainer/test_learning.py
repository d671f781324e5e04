"""The trainer learns real data: accuracy a correct gdbn/nolearn implementation reaches (measured, with some
margin), and RBM pretraining lowers the reconstruction error."""

from __future__ import annotations

import numpy as np
import pytest

from tests.trainer.trainer_fixtures import dataset, one_blas_thread  # noqa: F401 - fixture
from trainer import DBN
from trainer.backend import numpy_backend
from trainer.network import Params
from trainer.rbm import reconstruction_error

pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.mark.parametrize(
    ("name", "limit", "layers", "params", "measured", "floor"),
    [
        # measured on NumPy, seed 42; PyTorch with the same update rule: 0.893 on mnist-5k
        ("digits", None, [64, 100, 10], {"learn_rates": 0.3, "epochs": 30}, 0.9242, 0.90),
        ("digits", None, [64, 100, 10], {"learn_rates": 0.3, "epochs": 30, "use_re_lu": True}, 0.9613, 0.94),
        (
            "digits",
            None,
            [64, 100, 10],
            {"learn_rates": 0.3, "epochs": 30, "dropouts": [0.1, 0.3]},
            0.9125,
            0.89,
        ),
        (
            "mnist-5k",
            None,
            [784, 300, 10],
            {"learn_rates": 0.3, "learn_rate_decays": 0.9, "epochs": 10},
            0.8897,
            0.87,
        ),
        ("fashion-mnist", 10000, [784, 300, 10], {"learn_rates": 0.3, "epochs": 5}, 0.8018, 0.78),
    ],
    ids=["digits", "digits-relu", "digits-dropout", "mnist-5k", "fashion-10k"],
)
def test_accuracy_on_real_data(
    name: str, limit: int | None, layers: list[int], params: dict, measured: float, floor: float
) -> None:
    data = dataset(name, limit)
    clf = DBN(layers, backend="numpy", **params).fit(data.X_train, data.y_train)
    acc = clf.score(data.X_test, data.y_test)
    assert acc >= floor, f"{name}: test accuracy {acc:.4f} (measured {measured})"
    # the epoch curve goes the right way: the last epoch's training loss and error are below the first's
    assert clf.losses_fine_tune_[-1] < clf.losses_fine_tune_[0]
    assert clf.errors_fine_tune_[-1] < clf.errors_fine_tune_[0]


def test_rbm_pretraining_lowers_reconstruction_error() -> None:
    data = dataset("digits")
    clf = DBN([64, 100, 10], epochs_pretrain=[10, 0], learn_rates_pretrain=0.01, epochs=0, backend="numpy")
    clf.fit(data.X_train, data.y_train)
    be = numpy_backend()
    before = reconstruction_error(
        be, Params.initial(be, (64, 100, 10), (0.05, 0.05), 42), 0, data.X_test, True, False
    )
    after = reconstruction_error(be, clf.net_, 0, data.X_test, True, False)
    assert after < 0.3 * before, (before, after)  # measured: 17.69 -> 4.04 on held-out digits
    per_epoch = clf.errors_pretrain_[0]  # the sampled CD-1 reconstruction error during training
    assert len(per_epoch) == 10 and per_epoch[-1] < 0.7 * per_epoch[0]  # measured: 12.48 -> 7.93


def test_pretraining_every_layer_helps_a_deep_sigmoid_net() -> None:
    data = dataset("digits")
    common = {"learn_rates": 0.3, "epochs": 50, "backend": "numpy"}
    plain = DBN([64, 100, 50, 10], **common).fit(data.X_train, data.y_train)
    pre = DBN(
        [64, 100, 50, 10], epochs_pretrain=[10, 10, 0], learn_rates_pretrain=[0.03, 0.3, 0.3], **common
    ).fit(data.X_train, data.y_train)
    assert [len(e) for e in pre.errors_pretrain_] == [10, 10]
    assert all(e[-1] < e[0] for e in pre.errors_pretrain_)
    # measured: 0.7475 without pretraining, 0.8064 with it (deep sigmoid nets leave their plateau sooner)
    assert pre.score(data.X_test, data.y_test) > plain.score(data.X_test, data.y_test) + 0.02
    assert pre.score(data.X_test, data.y_test) > 0.78
    assert np.isfinite(pre.predict_proba(data.X_test)).all()
