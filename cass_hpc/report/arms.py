"""Both arms together (the paper's §6 open question: which arm to use, or both?).

CASS trains a CNN and a ViT side by side, and the paper reports each arm on its own. For every
pair of cells that differ only in the arm (same experiment, dataset, setting, method, label
fraction and replicate (split_seed, seed)) we add two rows, as if they were arms of their own:

- ``val_selected`` — the arm whose validation score (results.json ``val_metrics``, the kept
  weights) is better, per metric: the row's test ``macro_f1`` comes from the arm with the
  better validation ``macro_f1``, its ``loss`` from the arm with the lower validation loss; a
  tie goes to the CNN. Only validation data chooses, so the row is an honest test estimate.
- ``ensemble`` — the mean of the two arms' test probabilities (each cell's ``predictions.npz``:
  softmax for single-label, sigmoid for multi-label), scored by the same
  :func:`cass_hpc.metrics.classification_metrics` as every cell: single-label takes the argmax
  of the mean probability (we pass log-probabilities, whose softmax is the mean again),
  multi-label thresholds the mean sigmoid at 0.5 (we pass its logit, nudged so that float32
  rounding cannot move a mean just above 0.5 onto 0.5). No ``loss`` for the ensemble. AUROC
  ranks the mean probabilities after the float32 rounding every cell's metrics go through, so
  two means within ~1e-7 of each other may rank either way.

A pair with a cell missing, or cells without ``val_metrics`` / ``predictions.npz`` (records
from before issue 14), gets no such row; :func:`both_arms` says so in one note.

Example:
    >>> derived, choices, notes = both_arms(frame)   # frame: deduplicated, annotated records
    >>> summary = aggregate(pd.concat([frame, derived]))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from cass_hpc.report.records import METRIC_PREFIX, REPLICATE_COLUMNS, VAL_PREFIX
from cass_hpc.report.tables import LOWER_IS_BETTER

PAIR_COLUMNS = ("experiment", "dataset", "setting", "method", "label_fraction", *REPLICATE_COLUMNS)
ARMS = ("cnn", "vit")
CHOICE_COLUMNS = (*PAIR_COLUMNS, "metric", "val_cnn", "val_vit", "selected_arm", "test_value")
_LOGIT_FLOOR = 1e-6  # sigmoid(1e-6) > 0.5 in float32; a smaller positive logit could round to 0.5

Predictions = Mapping[str, np.ndarray]


def read_predictions(path: str | Path) -> dict[str, np.ndarray] | None:
    """``test_probs`` and ``test_targets`` of a cell's predictions.npz; None if unreadable."""
    try:
        with np.load(path) as data:
            return {name: np.asarray(data[name]) for name in ("test_probs", "test_targets")}
    except (OSError, KeyError, ValueError):
        return None


def ensemble_scores(probs: np.ndarray, multilabel: bool) -> np.ndarray:
    """Scores that :func:`~cass_hpc.metrics.classification_metrics` reads as ``probs``: log
    for single-label (argmax and softmax unchanged), logit for multi-label (sigmoid > 0.5
    exactly where ``probs > 0.5``)."""
    probs = np.asarray(probs, dtype=np.float64)
    if not multilabel:
        return np.log(np.clip(probs, np.finfo(np.float64).tiny, None))
    clipped = np.clip(probs, 1e-12, 1 - 1e-12)
    logits = np.log(clipped) - np.log1p(-clipped)
    above = probs > 0.5
    return np.where(above, np.maximum(logits, _LOGIT_FLOOR), np.minimum(logits, 0.0))


def ensemble_metrics(cnn: Predictions, vit: Predictions) -> dict[str, float]:
    """Test metrics of the mean of two arms' probabilities (see module doc). Raises ValueError
    when the two cells' test targets or probability shapes differ."""
    import torch  # the collector imports torch only when it has an ensemble to score

    from cass_hpc.metrics import classification_metrics

    cnn_probs, vit_probs = np.asarray(cnn["test_probs"]), np.asarray(vit["test_probs"])
    targets = np.asarray(cnn["test_targets"])
    if cnn_probs.shape != vit_probs.shape or cnn_probs.ndim != 2:
        raise ValueError(f"test_probs shapes differ: {cnn_probs.shape} vs {vit_probs.shape}")
    if not np.array_equal(targets, np.asarray(vit["test_targets"])):
        raise ValueError("the two arms' test_targets differ (another split or order)")
    multilabel = targets.ndim == 2
    mean = (cnn_probs.astype(np.float64) + vit_probs.astype(np.float64)) / 2
    scores = torch.from_numpy(ensemble_scores(mean, multilabel))
    target = torch.from_numpy(targets.astype(np.float32 if multilabel else np.int64))
    metrics = classification_metrics(scores, target, mean.shape[1], multilabel=multilabel)
    return {name: math.nan if value is None else float(value) for name, value in metrics.items()}


def _pairs(frame: pd.DataFrame) -> list[tuple[pd.Series, pd.Series]]:
    """Every (CNN cell, ViT cell) that differ only in the arm."""
    cells = frame[frame["arm"].isin(ARMS)]
    pairs = []
    for _, group in cells.groupby(list(PAIR_COLUMNS), sort=True, dropna=False):
        by_arm = {row["arm"]: row for _, row in group.iterrows()}
        if set(by_arm) == set(ARMS):
            pairs.append((by_arm["cnn"], by_arm["vit"]))
    return pairs


def _row(cnn: pd.Series, vit: pd.Series, arm: str) -> dict[str, object]:
    return {
        **{column: cnn[column] for column in PAIR_COLUMNS},
        "key": f"{cnn['key']}+{vit['key']}#{arm}",
        "arm": arm,
        "backbone": f"{cnn['backbone']} + {vit['backbone']}",
        "fixed_settings": cnn.get("fixed_settings", ""),
        "synthetic": bool(cnn.get("synthetic", False) or vit.get("synthetic", False)),
        "collapsed": False,  # the COLLAPSE lines name the arms themselves
        "created": max(cnn["created"], vit["created"]),
    }


def _val_selected(
    cnn: pd.Series, vit: pd.Series
) -> tuple[dict[str, object] | None, list[dict[str, object]]]:
    """The val-selected row of one pair (None without validation scores) and its choices."""
    row, choices = _row(cnn, vit, "val_selected"), []
    for column in cnn.index:
        if not column.startswith(VAL_PREFIX):
            continue
        metric = column[len(VAL_PREFIX) :]
        scores = {arm: cell.get(column) for arm, cell in zip(ARMS, (cnn, vit), strict=True)}
        test = METRIC_PREFIX + metric
        if test not in cnn.index or any(pd.isna(v) for v in scores.values()):
            continue
        lower = metric in LOWER_IS_BETTER
        vit_wins = scores["vit"] < scores["cnn"] if lower else scores["vit"] > scores["cnn"]
        chosen = vit if vit_wins else cnn  # a tie goes to the CNN
        row[test] = chosen[test]
        choices.append({
            **{c: cnn[c] for c in PAIR_COLUMNS}, "metric": metric, "val_cnn": scores["cnn"],
            "val_vit": scores["vit"], "selected_arm": chosen["arm"], "test_value": chosen[test],
        })  # fmt: skip
    return (row if choices else None), choices


def both_arms(
    frame: pd.DataFrame,
    load: Callable[[str], Predictions | None] = read_predictions,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The val-selected and ensemble rows of every CNN/ViT pair in ``frame`` (records, one per
    replicate, as the arms' rows look: ``metric.<name>`` columns), the per-metric arm choices
    (:data:`CHOICE_COLUMNS`) and notes on the pairs that got no such row.

    ``load`` reads a cell's predictions (``predictions_path``); only it touches files.
    """
    rows: list[dict[str, object]] = []
    choices: list[dict[str, object]] = []
    pairs = _pairs(frame)
    no_val, no_predictions, unusable = 0, 0, []
    for cnn, vit in pairs:
        selected, chosen = _val_selected(cnn, vit)
        if selected is None:
            no_val += 1
        else:
            rows.append(selected)
            choices += chosen
        paths = [cell.get("predictions_path") for cell in (cnn, vit)]
        loaded = [load(str(p)) if isinstance(p, str) and p else None for p in paths]
        if loaded[0] is None or loaded[1] is None:
            no_predictions += 1
            continue
        try:
            metrics = ensemble_metrics(loaded[0], loaded[1])
        except ValueError as error:
            unusable.append(f"{cnn['key']} + {vit['key']}: {error}")
            continue
        ensemble = _row(cnn, vit, "ensemble")
        ensemble.update({METRIC_PREFIX + name: value for name, value in metrics.items()})
        rows.append(ensemble)
    notes = []
    if no_val or no_predictions:
        notes.append(
            f"both arms together: of {len(pairs)} CNN/ViT cell pair(s), {no_val} lack "
            f"val_metrics (no val-selected row) and {no_predictions} lack predictions.npz (no "
            "ensemble row): records from before issue 14 or a missing file"
        )
    notes += [f"no ensemble for {item}" for item in unusable]
    derived = pd.DataFrame(rows)
    if not derived.empty:
        derived["split_seed"] = pd.array(derived["split_seed"].tolist(), dtype="Int64")
    return derived, pd.DataFrame(choices, columns=list(CHOICE_COLUMNS)), notes
