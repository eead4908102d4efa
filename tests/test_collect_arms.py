"""Both arms together (issue 14 item 4, the paper's §6 question): the arm chosen on validation
and the CNN + ViT ensemble as extra rows of the results tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from collect_fixtures import result, write_tree
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from cass_hpc.collect import main
from cass_hpc.metrics import classification_metrics, probabilities
from cass_hpc.report import arms, settings
from cass_hpc.report import records as rec

RNG = np.random.default_rng(0)  # continuous probabilities: no ties for float32 rounding to break
TARGETS = np.tile([0, 1, 2], 10)
CNN_PROBS = RNG.dirichlet([1.0, 1.0, 1.0], len(TARGETS)).astype(np.float32)
VIT_PROBS = RNG.dirichlet([1.0, 1.0, 1.0], len(TARGETS)).astype(np.float32)


def frame_of(records: list[dict[str, object]]) -> pd.DataFrame:
    parsed = rec.records_frame(rec.parse_record(r) for r in records)
    frame, _ = rec.deduplicate(settings.annotate(parsed))
    return frame


def pair(seed: int, cnn_val: float, vit_val: float, **extra: object) -> list[dict[str, object]]:
    """A CNN and a ViT cell of one replicate; test macro-F1 0.6 (CNN) and 0.7 (ViT)."""
    return [
        result(f"{arm}{seed}", arm=arm, seed=seed, macro_f1=test, **extra,
               val_metrics={"macro_f1": val, "loss": 1 - val})
        for arm, test, val in (("cnn", 0.6, cnn_val), ("vit", 0.7, vit_val))
    ]  # fmt: skip


def test_val_selected_takes_the_test_score_of_the_arm_with_the_higher_val_score() -> None:
    records = pair(0, cnn_val=0.5, vit_val=0.9) + pair(1, cnn_val=0.8, vit_val=0.4)
    records += pair(2, cnn_val=0.6, vit_val=0.6)  # a tie goes to the CNN
    derived, choices, _ = arms.both_arms(frame_of(records))
    picked = choices[choices["metric"] == "macro_f1"].set_index("seed")["selected_arm"]
    assert picked.to_dict() == {0: "vit", 1: "cnn", 2: "cnn"}
    selected = derived[derived["arm"] == "val_selected"].set_index("seed")
    assert selected["metric.macro_f1"].to_dict() == {0: 0.7, 1: 0.6, 2: 0.6}


def test_val_selected_loss_takes_the_arm_with_the_lower_val_loss() -> None:
    derived, choices, _ = arms.both_arms(frame_of(pair(0, cnn_val=0.5, vit_val=0.9)))
    loss = choices[choices["metric"] == "loss"].iloc[0]
    assert loss["selected_arm"] == "vit"  # val loss 0.1 < 0.5
    assert (loss["val_cnn"], loss["val_vit"]) == pytest.approx((0.5, 0.1))


def test_ensemble_row_is_the_metric_of_the_averaged_probabilities() -> None:
    got = arms.ensemble_metrics(
        {"test_probs": CNN_PROBS, "test_targets": TARGETS},
        {"test_probs": VIT_PROBS, "test_targets": TARGETS},
    )
    mean = (CNN_PROBS.astype(float) + VIT_PROBS) / 2
    predicted = mean.argmax(axis=1)
    assert got["macro_f1"] == pytest.approx(f1_score(TARGETS, predicted, average="macro"))
    assert got["micro_f1"] == pytest.approx(f1_score(TARGETS, predicted, average="micro"))
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(TARGETS, predicted))
    auroc = roc_auc_score(TARGETS, mean, multi_class="ovr", average="macro")
    assert got["auroc"] == pytest.approx(auroc, abs=1e-6)


def test_ensemble_multilabel_thresholds_the_mean_sigmoid_at_one_half_exactly() -> None:
    targets = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], np.float32)
    just_above = np.nextafter(np.float32(0.5), np.float32(1))  # mean 0.5 + 3e-8: positive
    cnn = np.array([[0.5, 0.5], [0.2, 0.9], [0.9, 0.4], [0.1, 0.3]], np.float32)
    vit = np.array([[just_above, 0.5], [0.4, 0.2], [0.7, 0.7], [0.3, 0.9]], np.float32)
    got = arms.ensemble_metrics(
        {"test_probs": cnn, "test_targets": targets}, {"test_probs": vit, "test_targets": targets}
    )
    predicted = ((cnn.astype(float) + vit) / 2 > 0.5).astype(int)
    assert predicted[0].tolist() == [1, 0]  # 0.5 exactly is not above the threshold
    assert got["macro_f1"] == pytest.approx(f1_score(targets, predicted, average="macro"))
    assert got["micro_f1"] == pytest.approx(f1_score(targets, predicted, average="micro"))


def test_ensemble_of_one_arm_with_itself_gives_that_cells_own_metrics() -> None:
    logits = torch.tensor(np.log(CNN_PROBS)) * 3
    own = classification_metrics(logits, torch.tensor(TARGETS), 3)
    probs = probabilities(logits, multilabel=False).numpy()
    cell = {"test_probs": probs, "test_targets": TARGETS}
    assert arms.ensemble_metrics(cell, cell) == pytest.approx(own, abs=1e-6)


def test_ensemble_refuses_arms_scored_on_different_test_targets() -> None:
    with pytest.raises(ValueError, match="test_targets differ"):
        arms.ensemble_metrics(
            {"test_probs": CNN_PROBS, "test_targets": TARGETS},
            {"test_probs": VIT_PROBS, "test_targets": TARGETS[::-1].copy()},
        )


def predictions_of(probs: np.ndarray) -> dict[str, np.ndarray]:
    """A predictions.npz as the contract of issue 14 has it."""
    return {"val_probs": probs, "val_targets": TARGETS, "test_probs": probs,
            "test_targets": TARGETS}  # fmt: skip


def test_cli_results_have_val_selected_and_ensemble_rows_and_old_records_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = pair(0, 0.5, 0.9) + pair(1, 0.8, 0.4)
    records += [result("old-cnn", seed=2), result("old-vit", arm="vit", seed=2)]  # pre-issue 14
    files = {f"{arm}{seed}": predictions_of(CNN_PROBS if arm == "cnn" else VIT_PROBS)
             for arm in ("cnn", "vit") for seed in (0, 1)}  # fmt: skip
    write_tree(tmp_path, records, predictions=files)
    assert main([str(tmp_path), "--no-plots"]) == 0
    summary = tmp_path / "summary"
    markdown = (summary / "results.md").read_text(encoding="utf-8")
    assert "| CASS · val-selected arm | 0.6500 ± 0.0050 (n=2) [0.0147, 1.2853] |" in markdown
    ensemble = f1_score(TARGETS, ((CNN_PROBS + VIT_PROBS) / 2).argmax(axis=1), average="macro")
    assert f"| CASS · ensemble | {ensemble:.4f} ± 0.0000 (n=2) [{ensemble:.4f}, " in markdown
    assert "CASS $\\cdot$ val-selected arm & 0.6500" in (summary / "results.tex").read_text()
    csv = pd.read_csv(summary / "results.csv").query("metric == 'macro_f1'")
    assert sorted(csv["arm"]) == ["cnn", "ensemble", "val_selected", "vit"]
    assert csv.set_index("arm").loc["ensemble", "backbone"] == "resnet18 + vit_tiny_patch16_224"
    out = capsys.readouterr().out
    assert out.count("of 3 CNN/ViT cell pair(s), 1 lack val_metrics") == 1
    choices = pd.read_csv(summary / "val_selected.csv")
    assert set(choices["selected_arm"]) == {"cnn", "vit"} and len(choices) == 4
