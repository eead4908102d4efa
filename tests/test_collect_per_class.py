"""Per-class metrics and AUROC in the collector (issue 14 item 1): per_class.csv averages each
class over replicates; ``--metric auroc`` tabulates AUROC; older records without either work."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from collect_fixtures import per_class_block, result, write_tree

from cass_hpc.collect import main
from cass_hpc.report import records as rec
from cass_hpc.report.per_class import PER_CLASS_COLUMNS

NAMES = ["circle", "square"]


def test_per_class_csv_is_the_mean_over_replicates_per_class(tmp_path: Path) -> None:
    records = [
        result("a0", seed=0, per_class=per_class_block(NAMES, [0.8, 0.6], [0.9, None])),
        result("a1", seed=1, per_class=per_class_block(NAMES, [0.6, 0.4], [0.7, 0.5])),
        result("a2", seed=1, split_seed=3, per_class=per_class_block(NAMES, [0.7, 0.5])),
        result("old", arm="vit"),  # before issue 14: no per_class, not in the file
    ]
    write_tree(tmp_path, records)
    assert main([str(tmp_path), "--no-plots"]) == 0
    csv = pd.read_csv(tmp_path / "summary" / "per_class.csv")
    assert list(csv.columns) == list(PER_CLASS_COLUMNS)
    assert csv["class_name"].tolist() == NAMES and set(csv["arm"]) == {"cnn"}
    circle, square = csv.iloc[0], csv.iloc[1]
    assert circle["f1"] == pytest.approx(0.7) and circle["precision"] == pytest.approx(0.7)
    assert circle["auroc"] == pytest.approx(0.8)  # null AUROCs are left out of the mean
    assert square["auroc"] == pytest.approx(0.5) and square["recall"] == pytest.approx(0.5)
    assert (circle["n"], circle["support"], circle["label_fraction"]) == (3, 10, 0.1)


@pytest.mark.parametrize(
    "per_class",
    [
        {"names": NAMES, "f1": [0.5]},  # lists of other lengths
        {"names": NAMES, "support": [1, 1], "precision": [1, 1], "recall": [1, 1], "f1": "x"},
        ["circle"],
    ],
)
def test_a_malformed_per_class_block_is_ignored_and_the_cell_still_counts(
    per_class: object,
) -> None:
    parsed = rec.parse_record(result("x") | {"per_class": per_class})
    assert parsed["per_class"] is None and parsed["metric.macro_f1"] == 0.8


def test_metric_auroc_tabulates_the_records_that_have_it_and_old_ones_do_not_break(
    tmp_path: Path,
) -> None:
    records = [
        result("a0", seed=0, auroc=0.90),
        result("a1", seed=1, auroc=0.80),
        result("a2", seed=2),  # an older record of the same cell: no auroc, not counted
        result("b0", arm="vit", auroc=None) | {"metrics": {"macro_f1": 0.5, "auroc": None}},
    ]
    write_tree(tmp_path, records)
    assert main([str(tmp_path), "--metric", "auroc", "--no-plots"]) == 0
    markdown = (tmp_path / "summary" / "results.md").read_text(encoding="utf-8")
    assert "test auroc" in markdown
    assert "| CASS · CNN (resnet18) | **0.8500 ± 0.0050 (n=2)** [" in markdown
    assert "| CASS · ViT" not in markdown  # its AUROC is undefined (null): no row


def test_metric_auroc_on_records_without_it_exits_2_listing_what_they_have(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(tmp_path, [result("a"), result("b", auroc=None)])
    assert main([str(tmp_path), "--metric", "auroc"]) == 2
    error = capsys.readouterr().err
    assert "'auroc' has a value in no results.json" in error
    assert "balanced_accuracy, loss, macro_f1, micro_f1" in error


def test_split_seed_must_be_an_integer_or_null() -> None:
    assert rec.parse_record(result("x") | {"split_seed": None})["split_seed"] is None
    with pytest.raises(rec.RecordError, match="'split_seed' must be an integer or null"):
        rec.parse_record(result("x") | {"split_seed": "3"})
