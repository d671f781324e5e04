"""`DBN`: nolearn's estimator, with scikit-learn's method names, on this package's NumPy/CuPy trainer.

    from trainer import DBN
    clf = DBN([784, 800, 800, 10], learn_rates=0.3, learn_rate_decays=0.9, epochs=10, verbose=1)
    clf.fit(X_train, y_train)          # X (n, 784) floats in [0, 1], y (n,) labels
    clf.score(X_test, y_test)          # accuracy
    clf.save("model.npz"); DBN.load("model.npz").predict(X_test)

Hyperparameters have nolearn's names and defaults (see trainer.config.ModelConfig); per-layer values take a
scalar or one value per weight layer. Labels are used as they are when they are integers in
[0, layer_sizes[-1]) (nolearn's convention, so predict_proba's column j is class j); other labels (strings,
sparse integers) are mapped to classes_ in sorted order.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

import numpy as np

from trainer.backend import Backend, select_backend
from trainer.checkpoint import atomic_savez
from trainer.config import ModelConfig, parse_model
from trainer.errors import DataError, JobError
from trainer.loop import TrainData, TrainState, train
from trainer.network import Params, predict_proba
from trainer.progress import epoch_line
from trainer.stored_npz import StoredNpz, history_problem
from trainer.strict_json import dumps

MODEL_FORMAT = "ec2dbn-trainer-model/1"


class DBN:
    """A Deep Belief Network classifier: optional RBM pretraining, then backprop fine-tuning (gdbn's math).

    Fitted attributes: classes_ (K,), n_features_in_, net_ (the parameters, on the backend's device),
    backend_, history_ (one record per epoch), and nolearn's errors_pretrain_, losses_fine_tune_,
    errors_fine_tune_.
    """

    def __init__(
        self,
        layer_sizes: list[int] | tuple[int, ...],
        *,
        scales: Any = 0.05,
        real_valued_vis: bool = True,
        use_re_lu: bool = False,
        learn_rates: Any = 0.1,
        learn_rate_decays: Any = 1.0,
        learn_rate_minimums: Any = 0.0,
        momentum: float = 0.9,
        l2_costs: Any = 0.0001,
        dropouts: Any = 0,
        learn_rates_pretrain: Any = None,
        momentum_pretrain: float | None = None,
        l2_costs_pretrain: Any = None,
        epochs: int = 10,
        epochs_pretrain: Any = 0,
        minibatch_size: int = 64,
        seed: int = 42,
        backend: str = "auto",
        verbose: int = 0,
    ) -> None:
        self.layer_sizes = layer_sizes
        self.scales = scales
        self.real_valued_vis = real_valued_vis
        self.use_re_lu = use_re_lu
        self.learn_rates = learn_rates
        self.learn_rate_decays = learn_rate_decays
        self.learn_rate_minimums = learn_rate_minimums
        self.momentum = momentum
        self.l2_costs = l2_costs
        self.dropouts = dropouts
        self.learn_rates_pretrain = learn_rates_pretrain
        self.momentum_pretrain = momentum_pretrain
        self.l2_costs_pretrain = l2_costs_pretrain
        self.epochs = epochs
        self.epochs_pretrain = epochs_pretrain
        self.minibatch_size = minibatch_size
        self.seed = seed
        self.backend = backend
        self.verbose = verbose

    # ------------------------------------------------------------------ scikit-learn's estimator protocol
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments (scikit-learn's clone / grid search use this)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> DBN:
        for name, value in params.items():
            if name not in self._param_names():
                raise JobError(f"{name}: unknown parameter of DBN")
            setattr(self, name, value)
        return self

    _estimator_type = "classifier"  # scikit-learn < 1.6 reads this

    def __sklearn_tags__(self) -> Any:
        """scikit-learn >= 1.6 asks estimators for tags (clone, cross_val_score); only called by it."""
        from sklearn.utils import ClassifierTags, Tags, TargetTags

        return Tags(
            estimator_type="classifier",
            target_tags=TargetTags(required=True),
            classifier_tags=ClassifierTags(),
        )

    def config(self) -> ModelConfig:
        """The validated hyperparameters (raises JobError naming a bad one)."""
        raw = {k: v for k, v in self.get_params().items() if k not in ("backend", "verbose", "layer_sizes")}
        raw = {
            k: list(v) if isinstance(v, tuple | np.ndarray) else v for k, v in raw.items() if v is not None
        }
        layers = self.layer_sizes
        raw["layers"] = list(layers) if isinstance(layers, list | tuple | np.ndarray) else layers
        try:
            return parse_model(raw, prefix="")
        except JobError as exc:  # the estimator calls `layers` by nolearn's name
            text = str(exc)
            raise JobError("layer_sizes" + text[6:] if text.startswith("layers") else text) from None

    # ------------------------------------------------------------------ training and prediction
    def fit(self, X: Any, y: Any) -> DBN:
        """Train on X (n, layer_sizes[0]) and labels y (n,). Returns self.

        Raises trainer.divergence.Diverged (a TrainerError) when an epoch's loss or the weights stop being
        finite (Keras's TerminateOnNaN): its message names the epoch and the likely causes.
        """
        cfg = self.config()
        X = _check_X(X, cfg.layers[0])
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise DataError(f"y must be 1-D with one label per row of X ({len(X)}), got shape {y.shape}")
        self.classes_, codes = _encode(y, cfg.layers[-1])
        self.n_features_in_ = X.shape[1]
        self.backend_ = select_backend(self.backend)
        state = TrainState.fresh(self.backend_, cfg)
        data = TrainData.from_host(self.backend_, X, codes, cfg.layers[-1])

        def report(_state: TrainState, record: dict[str, Any]) -> None:
            if self.verbose:
                print(epoch_line(record), file=sys.stdout, flush=True)

        train(self.backend_, cfg, data, state, on_epoch=report)
        self.net_ = state.params
        self.config_ = cfg
        self._set_history(state.history)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n, K) float32; column j is classes_[j]."""
        self._check_fitted()
        X = _check_X(X, self.net_.layers[0])
        return predict_proba(self.backend_, self.net_, X, self.config_.use_re_lu)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row, (n,)."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def score(self, X: Any, y: Any) -> float:
        """Accuracy on (X, y), as scikit-learn's classifiers define `score` (nolearn: 1 − error rate)."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write the fitted model to an .npz (atomically): parameters, classes and hyperparameters."""
        self._check_fitted()
        save_model(path, self.backend_, self.net_, self.config_, self.classes_, getattr(self, "history_", []))

    @classmethod
    def load(cls, path: str | Path, backend: str | Backend = "auto") -> DBN:
        """A fitted DBN from `save`'s file. Raises DataError for a missing, foreign or malformed file (every
        array's shape is checked against the stored layers before it is read; see trainer.stored_npz)."""
        path = Path(path)
        with StoredNpz(path, DataError, "model file") as npz:
            meta = npz.meta() if npz.has("meta") else {}
            if meta.get("format") != MODEL_FORMAT:
                raise DataError(f"{path}: not a trainer model (expected a model.npz written by the trainer)")
            try:
                cfg = parse_model(meta.get("config"), prefix="")
            except JobError as exc:
                raise npz.problem(f"meta.config: {exc}") from None
            problem = history_problem(meta.get("history", []))
            if problem:
                raise npz.problem(f"meta.{problem}")
            why = f"for layers {list(cfg.layers)}"
            arrays = npz.params(cfg.layers, why)
            classes = npz.array("classes", (None,), kinds="biufUS", why=why)  # labels may be strings
            if not 1 <= len(classes) <= cfg.layers[-1]:
                raise npz.problem(f"classes has {len(classes)} labels for {cfg.layers[-1]} output units")
            model = cls(list(cfg.layers), backend=backend if isinstance(backend, str) else backend.name)
            for name, value in meta["config"].items():
                if name != "layers" and hasattr(model, name):
                    setattr(model, name, value)
            model.backend_ = backend if isinstance(backend, Backend) else select_backend(backend)
            model.net_ = Params.from_host(model.backend_, arrays, cfg.n_weight_layers)
            model.classes_ = np.array(classes)
        model.config_ = cfg
        model.n_features_in_ = cfg.layers[0]
        model._set_history(meta.get("history", []))
        return model

    # ------------------------------------------------------------------ helpers
    def _set_history(self, history: list[dict[str, Any]]) -> None:
        self.history_ = list(history)
        ft = [r for r in history if r["phase"] == "finetune"]
        self.losses_fine_tune_ = [r["loss"] for r in ft]
        self.errors_fine_tune_ = [r["err"] for r in ft]
        layers = sorted({r["layer"] for r in history if r["phase"] == "pretrain"})
        self.errors_pretrain_ = [
            [r["loss"] for r in history if r["phase"] == "pretrain" and r["layer"] == layer]
            for layer in layers
        ]

    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise JobError("this DBN is not fitted yet: call fit(X, y) first")

    def __repr__(self) -> str:
        defaults = {k: v.default for k, v in inspect.signature(type(self).__init__).parameters.items()}
        shown = [repr(self.layer_sizes)] + [
            f"{k}={v!r}" for k, v in self.get_params().items() if k != "layer_sizes" and v != defaults.get(k)
        ]
        return f"DBN({', '.join(shown)})"


def save_model(
    path: str | Path,
    backend: Backend,
    params: Params,
    cfg: ModelConfig,
    classes: np.ndarray,
    history: list[dict[str, Any]],
) -> None:
    """model.npz: W{i}, b{i}, c{i}, classes, and meta (JSON: format, hyperparameters, epoch records)."""
    arrays: dict[str, Any] = dict(params.to_host(backend))
    arrays["classes"] = np.asarray(classes)
    meta = {"format": MODEL_FORMAT, "config": cfg.to_dict(), "history": history}
    arrays["meta"] = np.array(dumps(meta))
    atomic_savez(Path(path), arrays)


def _check_X(X: Any, n_features: int) -> np.ndarray:
    """X as C-contiguous float32 (n, n_features), finite; DataError otherwise."""
    try:
        X = np.ascontiguousarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"X must be a numeric array: {exc}") from None
    if X.ndim != 2:
        raise DataError(f"X must be 2-D (samples, features), got shape {X.shape}")
    if X.shape[1] != n_features:
        raise DataError(f"X has {X.shape[1]} features but the network's input layer has {n_features} units")
    if not np.isfinite(X).all():
        raise DataError("X contains NaN or infinite values")
    return X


def _encode(y: np.ndarray, n_outputs: int) -> tuple[np.ndarray, np.ndarray]:
    """(classes_, codes in [0, K)): identity for integers in [0, n_outputs), else the sorted unique labels."""
    if y.dtype.kind in "iu" and len(y) and y.min() >= 0 and y.max() < n_outputs:
        return np.arange(n_outputs), y.astype(np.int64)
    classes, codes = np.unique(y, return_inverse=True)
    if len(classes) > n_outputs:
        raise DataError(f"y has {len(classes)} classes but the output layer has {n_outputs} units")
    return classes, codes.astype(np.int64)
