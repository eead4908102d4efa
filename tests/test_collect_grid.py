"""The collector on a paper-shaped grid with known numbers: exact cells, gains, timing, the paper
beside us, and robustness (a missing cell, a requeued duplicate in another run dir, a corrupt
file, a null metric)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from collect_fixtures import paper_grid, result, write_tree

from cass_hpc.collect import main


@pytest.fixture
def grid(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two run dirs: the grid in ``runs/a`` (+ a corrupt results.json); in ``runs/b`` a requeued
    copy of one cell (same key, newer, different number) — returns (a, b, corrupt path)."""
    first, second = tmp_path / "runs" / "a", tmp_path / "runs" / "b"
    records = paper_grid()
    stale = next(r for r in records if r["key"] == "cass-cnn-0.1-0")
    stale["metrics"] = {**stale["metrics"], "micro_f1": 0.10}  # the older attempt
    write_tree(first, records)
    newer = json.loads(json.dumps(stale))
    newer["metrics"]["micro_f1"] = 0.85
    newer["created"] = "2026-11-22T09:00:00Z"
    write_tree(second, [newer])
    corrupt = first / "store" / "torn" / "results.json"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_text('{"schema": "cass-hpc-results/1", "ke', encoding="utf-8")
    return first, second, corrupt


def run(grid: tuple[Path, Path, Path], *extra: str) -> Path:
    first, second, _ = grid
    out = first.parent / "out"
    assert main([str(first), str(second), "--out", str(out), "--no-plots", *extra]) == 0
    return out


def test_grid_table_cells_are_mean_and_variance_with_missing_cell_and_duplicate_once(
    grid: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = run(grid)
    markdown = (out / "results.md").read_text(encoding="utf-8")
    assert "## brain_mri — test micro_f1, mean ± variance over seeds (experiment paper)" in markdown
    # the requeued cell counts once, with the newer number (0.85 and 0.87 → 0.86 ± 0.0002)
    assert (
        "| CASS · CNN (resnet18) | **0.8600 ± 0.0002 (n=2)** [0.7329, 0.9871] | **0.9600 ± 0.0002 "
        "(n=2)** [0.8329, 1.0871] |" in markdown
    )
    assert (
        "| DINO · ViT (vit_tiny_patch16_224) | 0.6200 ± 0.0008 (n=2) [0.3659, 0.8741] | 0.7000 "
        "(n=1) |" in markdown
    )
    assert "23 of 24 cells present" in markdown  # DINO · ViT · 100 % seed 1 never finished
    captured = capsys.readouterr()
    assert "1 duplicate result(s) of an already seen key counted once (newest)" in captured.out
    assert any("torn/results.json" in line and "not valid JSON" in line
               for line in captured.err.splitlines())  # fmt: skip


def test_gains_follow_app_g03_sum_over_arms_divided_by_datasets_with_that_fraction(
    grid: tuple[Path, Path, Path],
) -> None:
    gains = pd.read_csv(run(grid) / "gains.csv").set_index(["label_fraction", "baseline"])
    # 10 %: brain MRI only: (0.86 − 0.82) + (0.68 − 0.62) = 0.10 → +10 pp over 1 dataset
    assert gains.loc[(0.1, "dino"), "gain_pp"] == pytest.approx(10.0)
    assert gains.loc[(0.1, "dino"), "datasets"] == 1
    # 100 %: brain MRI (0.05 + 0.12) and ISIC-2019 (0.1 + 0.1, balanced accuracy) over 2 datasets
    assert gains.loc[(1.0, "dino"), "gain_pp"] == pytest.approx(18.5)
    assert gains.loc[(1.0, "dino"), "participating"] == "brain_mri, isic2019"
    # vs supervised: ISIC has no supervised cells, so it is not counted at 100 %
    assert gains.loc[(0.1, "supervised"), "gain_pp"] == pytest.approx(31.0)
    assert gains.loc[(1.0, "supervised"), "gain_pp"] == pytest.approx(13.0)
    assert gains.loc[(1.0, "supervised"), "left_out"] == "isic2019"
    markdown = (run(grid) / "results.md").read_text(encoding="utf-8")
    assert "| 100% | +18.50 pp | 2: brain_mri, isic2019 | +10.13 pp | +13.00 pp |" in markdown


def test_timing_table_sums_each_pretraining_once_and_gives_cass_over_dino(
    grid: tuple[Path, Path, Path],
) -> None:
    out = run(grid)
    timing = pd.read_csv(out / "timing.csv").set_index("dataset")
    # CASS: one run per seed (100 + 110 s), shared by 2 arms × 2 fractions; DINO: 4 runs = 900 s
    assert timing.loc["brain_mri", "cass_s"] == 210.0
    assert timing.loc["brain_mri", "dino_s"] == 900.0
    assert timing.loc["brain_mri", "ratio"] == pytest.approx(210.0 / 900.0)
    markdown = (out / "results.md").read_text(encoding="utf-8")
    assert "| brain_mri | 15 min 00 s | 3 min 30 s | 0.23 | 2 / 2 |" in markdown
    # beside the paper's Table 1 (26 h 21 min vs 7 h 11 min, ratio 0.27)
    assert (
        "| brain_mri | 15 min 00 s | 3 min 30 s | 0.23 | 26 h 21 min | 7 h 11 min | 0.27 "
        "| -0.0393 |"
    ) in markdown


def test_paper_values_are_set_beside_ours_with_the_difference(
    grid: tuple[Path, Path, Path],
) -> None:
    out = run(grid)
    markdown = (out / "results.md").read_text(encoding="utf-8")
    assert (
        "| CASS · CNN (resnet18) · 10% | 0.8600 ± 0.0002 (n=2) | 0.8925±0.0254 (ResNet-50) "
        "| -0.0325 | 4 |"
    ) in markdown
    assert (
        "| CASS · ViT (vit_tiny_patch16_224) · 100% | 0.6000 (n=1) | 0.5819±0.0015 (ViT-B/16) "
        "| +0.0181 | 5 |"
    ) in markdown
    compared = pd.read_csv(out / "paper_comparison.csv")
    assert len(compared[compared["dataset"] == "brain_mri"]) == 12  # every cell has a paper value
    row = compared.query("dataset == 'brain_mri' and method == 'cass' and arm == 'cnn'")
    row = row[row["label_fraction"] == 0.1].iloc[0]
    assert row["paper_table"] == 4 and row["paper_mean"] == 0.8925
    assert row["delta"] == pytest.approx(0.86 - 0.8925)
    assert row["paper_variance"] == 0.0254 and row["var"] == pytest.approx(0.0002)


def test_metric_override_per_dataset_changes_only_that_table(
    grid: tuple[Path, Path, Path],
) -> None:
    out = run(grid, "--metric", "brain_mri=macro_f1")
    markdown = (out / "results.md").read_text(encoding="utf-8")
    assert "## brain_mri — test macro_f1" in markdown
    assert "| CASS · CNN (resnet18) | **0.7600 ± 0.0002 (n=2)** [" in markdown  # micro − 0.1
    assert "## isic2019 — test balanced_accuracy" in markdown


def test_null_metric_is_not_counted_and_a_table_without_its_metric_is_noted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [result("a", macro_f1=0.8), result("b", seed=1, macro_f1=0.6)]
    records[1]["metrics"]["macro_f1"] = None
    records.append(result("c", dataset="other") | {"metrics": {"micro_f1": 0.5}})
    write_tree(tmp_path, records)
    assert main([str(tmp_path), "--no-plots"]) == 0
    captured = capsys.readouterr().out
    assert "0.8000 (n=1)" in captured
    assert "demo/other: no result has metric 'macro_f1' (have: micro_f1)" in captured


def test_several_settings_of_one_cell_are_kept_apart_not_deduplicated(tmp_path: Path) -> None:
    records = [result("k8", macro_f1=0.7), result("k16", macro_f1=0.9)]
    write_tree(tmp_path, records, [["pretrain.epochs=50"], ["pretrain.epochs=100"]])
    assert main([str(tmp_path), "--no-plots"]) == 0
    markdown = (tmp_path / "summary" / "results.md").read_text(encoding="utf-8")
    assert "| 50 | 0.7000 (n=1) |" in markdown and "| 100 (paper) | **0.9000 (n=1)** |" in markdown
