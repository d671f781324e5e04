"""Scores of a finished run: accuracy, scikit-learn's classification report (its exact layout, without
depending on scikit-learn), and the metrics.json document."""

from __future__ import annotations

from typing import Any

import numpy as np

from trainer.loop import TEST_KEYS


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of equal labels, y_true and y_pred (n,)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred)) if len(y_true) else 0.0


def precision_recall_f1_support(
    y_true: np.ndarray, y_pred: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-label precision, recall, F1 (float64, 0 where undefined, as scikit-learn's default) and support."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    tp = np.array([np.sum((y_true == c) & (y_pred == c)) for c in labels], dtype=np.int64)
    pred_sum = np.array([np.sum(y_pred == c) for c in labels], dtype=np.int64)
    true_sum = np.array([np.sum(y_true == c) for c in labels], dtype=np.int64)
    precision = _divide(tp, pred_sum)
    recall = _divide(tp, true_sum)
    f1 = _divide(
        2.0 * tp, (true_sum + pred_sum).astype(np.float64)
    )  # = 2PR/(P+R), as scikit-learn computes it
    return precision, recall, f1, true_sum


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, digits: int = 2) -> str:
    """The text of sklearn.metrics.classification_report(y_true, y_pred, digits=digits), same layout."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = np.unique(np.concatenate([y_true, y_pred]))
    names = [f"{label}" for label in labels]
    p, r, f1, s = precision_recall_f1_support(y_true, y_pred, labels)
    headers = ["precision", "recall", "f1-score", "support"]
    width = max(max(len(n) for n in names), len("weighted avg"), digits)
    report = ("{:>{width}s} " + " {:>9}" * len(headers)).format("", *headers, width=width) + "\n\n"
    row_fmt = "{:>{width}s} " + " {:>9.{digits}f}" * 3 + " {:>9}\n"
    for row in zip(names, p, r, f1, s, strict=True):
        report += row_fmt.format(*row, width=width, digits=digits)
    report += "\n"
    total = int(np.sum(s))
    acc_fmt = "{:>{width}s} " + " {:>9.{digits}}" * 2 + " {:>9.{digits}f}" + " {:>9}\n"
    report += acc_fmt.format("accuracy", "", "", accuracy(y_true, y_pred), total, width=width, digits=digits)
    macro = [float(np.mean(x)) for x in (p, r, f1)]
    report += row_fmt.format("macro avg", *macro, total, width=width, digits=digits)
    weighted = [float(np.average(x, weights=s)) if total else 0.0 for x in (p, r, f1)]
    report += row_fmt.format("weighted avg", *weighted, total, width=width, digits=digits)
    return report


def metrics_document(
    *,
    test_accuracy: float | None,
    backend: str,
    device: str,
    history: list[dict[str, Any]],
    train_seconds: float,
    total_seconds: float,
    samples_per_epoch: int,
    config: dict[str, Any],
    data: dict[str, Any],
    resumes: int,
    diverged: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """metrics.json: the result, the per-epoch curve, the timings and the job that produced them.

    samples_per_second is fine-tuning throughput: samples trained per second of fine-tuning (an epoch's
    `seconds` is its training only). An epoch scored on the test set also carries test_loss (mean
    cross-entropy per sample), test_err (error rate) and eval_seconds (the scoring's time).
    status is "finished", or "diverged" when `diverged` (trainer.divergence.Diverged.record(): phase,
    layer, epoch, batch, loss, message) says where training stopped; then test_accuracy is None and the
    epochs are the finite ones before it. Written as strict JSON: non-finite numbers become null.
    """
    finetune = [r for r in history if r["phase"] == "finetune"]
    pretrain = [r for r in history if r["phase"] == "pretrain"]
    ft_seconds = sum(r["seconds"] for r in finetune)
    return {
        "status": "finished" if diverged is None else "diverged",
        "diverged": diverged,
        "test_accuracy": test_accuracy,
        "backend": backend,
        "device": device,
        "epochs": [
            {k: r[k] for k in ("epoch", "loss", "err", "seconds", *TEST_KEYS) if k in r} for r in finetune
        ],
        "pretrain_epochs": [
            {"layer": r["layer"], "epoch": r["epoch"], "rec_err": r["loss"], "seconds": r["seconds"]}
            for r in pretrain
        ],
        "train_seconds": train_seconds,
        "total_seconds": total_seconds,
        "samples_per_second": (samples_per_epoch * len(finetune) / ft_seconds) if ft_seconds > 0 else None,
        "resumes": resumes,
        "config": config,
        "data": data,
    }


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(len(num), dtype=np.float64)
    mask = den != 0
    out[mask] = np.asarray(num, dtype=np.float64)[mask] / den[mask]
    return out
