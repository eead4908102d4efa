"""The paper's shipped values: loading, dataset recognition, metric per dataset, and its own
headline numbers recomputed (App. G.0.3 gains, §5.1 time saving)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cass_hpc.report.gains import gains_frame
from cass_hpc.report.paper import (
    PAPER_GAINS,
    canonical_dataset,
    metric_for,
    paper_summary,
    paper_times,
    paper_timing_frame,
    paper_values,
)
from cass_hpc.report.timing import time_saving

REPO = Path(__file__).resolve().parents[1]


def test_shipped_paper_values_hold_tables_2_to_5_cell_for_cell() -> None:
    values = paper_values()
    main = values[values["table"].isin([2, 3, 4, 5])]
    # 6 rows each; autoimmune and Dermofit have no 1 % column (§5.2, §5.3)
    assert main.groupby("table").size().to_dict() == {2: 12, 3: 12, 4: 18, 5: 18}
    row = main.query("table == 5 and method == 'dino' and arm == 'cnn' and label_fraction == 1.0")
    assert row["mean"].item() == 0.493 and row["variance"].item() == 3.9e-05
    assert row["printed"].item() == "0.493±3.9e-05"
    assert (main["setting"] == "").all()


def test_shipped_ablation_values_name_the_override_that_reproduces_them() -> None:
    values = paper_values()
    assert sorted(values["table"].unique()) == [2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 15, 16, 17,
                                                18, 19, 20, 21]  # fmt: skip
    swin = values.query("table == 19 and setting == 'model=swin_vitb16'").set_index("arm")
    assert swin.loc["cnn", "mean"] == 0.9883 and swin.loc["vit", "mean"] == 0.94
    typo = values.query("table == 6 and setting == 'pretrain.batch_size=8' and arm == 'cnn'")
    assert typo["printed"].item() == "0.88285±0011" and typo["variance"].item() == 0.0011


def test_papers_own_values_reproduce_its_100_percent_gain_but_not_1_or_10() -> None:
    gains = gains_frame(paper_summary()).set_index(["label_fraction", "baseline"])["gain_pp"]
    assert round(gains[(1.0, "dino")], 2) == PAPER_GAINS[1.0] == 10.13  # abstract: 10.13 %
    assert round(gains[(0.1, "dino")], 2) == 5.21  # abstract: 5.9 %
    assert round(gains[(0.01, "dino")], 2) == -7.45  # abstract: 3.8 %
    assert [round(gains[(f, "supervised")], 2) for f in (0.01, 0.1, 1.0)] == [5.43, 11.02, 19.38]


def test_papers_1_percent_gain_is_met_only_without_the_brain_mri_resnet_term() -> None:
    summary = paper_summary()
    keep = ~((summary["dataset"] == "brain_mri") & (summary["arm"] == "cnn"))
    partial = summary[keep]
    at_1 = partial[partial["label_fraction"] == 0.01]
    cass = at_1[at_1["method"] == "cass"].set_index(["dataset", "arm"])["mean"]
    dino = at_1[at_1["method"] == "dino"].set_index(["dataset", "arm"])["mean"]
    assert round(100 * (cass - dino).sum() / 2, 2) == 3.84  # abstract: 3.8 %


def test_papers_table_1_gives_its_69_percent_time_saving_as_a_mean_of_ratios() -> None:
    timing = paper_timing_frame().set_index("dataset")
    assert timing.loc["autoimmune", "ratio"] == pytest.approx(21 / 73)
    assert time_saving(timing) == pytest.approx(0.6975, abs=1e-4)  # §5.1: "69% less time"
    assert list(paper_times()["dino_min"]) == [73, 189, 1581, 6561]


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("isic2019", "isic2019"), ("ISIC_2019-384px", "isic2019"), ("dermofit", "dermofit"),
        ("brain_mri", "brain_mri"), ("Brain-Tumor-MRI", "brain_mri"),
        ("autoimmune", "autoimmune"), ("dermatomyositis_biopsies", "autoimmune"),
        ("demo", None), ("folder", None),
    ],
)  # fmt: skip
def test_datasets_are_recognised_by_name(name: str, canonical: str | None) -> None:
    assert canonical_dataset(name) == canonical


def test_metric_per_dataset_is_the_papers_unless_overridden() -> None:
    assert metric_for("brain_mri", {}) == "micro_f1"  # the paper's pooled F1
    assert metric_for("ISIC-2019", {}) == "balanced_accuracy"
    assert metric_for("demo", {}) == "macro_f1"
    assert metric_for("dermofit", {"*": "loss"}) == "loss"
    assert metric_for("isic_384", {"*": "loss", "isic2019": "macro_f1"}) == "macro_f1"
    assert metric_for("isic_384", {"isic_384": "micro_f1", "isic2019": "macro_f1"}) == "micro_f1"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")
def test_paper_value_files_are_package_data_for_a_non_editable_install() -> None:
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["cass_hpc.report"]
    shipped = {p.name for pattern in patterns for p in (REPO / "cass_hpc" / "report").glob(pattern)}
    assert {"paper_values.csv", "paper_times.csv"} <= shipped
