"""Uncertainty in the collector (issue 14 item 2): the 95 % t-interval of every table cell and
the paired test of CASS against each baseline, paired by replicate (split_seed, seed)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from collect_fixtures import result, write_tree
from scipy import stats as scipy_stats

from cass_hpc.collect import main
from cass_hpc.report import paired, settings, stats, tables
from cass_hpc.report import records as rec

T_975_DF1, T_975_DF2 = 12.706204736174707, 4.302652729911275  # tables of Student's t


def frame_of(records: list[dict[str, object]]) -> pd.DataFrame:
    parsed = rec.records_frame(rec.parse_record(r) for r in records)
    frame, _ = rec.deduplicate(settings.annotate(parsed))
    return frame


def test_t_interval_matches_a_hand_computation() -> None:
    values = [0.80, 0.84, 0.90]
    mean = sum(values) / 3
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    half = T_975_DF2 * s / math.sqrt(3)
    assert stats.t_interval(values) == pytest.approx((mean - half, mean + half))
    # two seeds 0.8 and 0.9: 0.85 ± 12.706 · 0.0707 / √2
    assert stats.t_interval([0.8, 0.9]) == pytest.approx(
        (0.85 - 0.635310, 0.85 + 0.635310), abs=1e-6
    )
    assert stats.t_quantile(2) == pytest.approx(T_975_DF1)


def test_t_interval_is_undefined_for_one_value_and_nan_is_dropped() -> None:
    assert all(math.isnan(v) for v in stats.t_interval([0.8]))
    assert stats.t_interval([0.8, math.nan, 0.9]) == pytest.approx(stats.t_interval([0.8, 0.9]))
    with pytest.raises(ValueError, match="confidence"):
        stats.t_quantile(3, confidence=95)


def test_summary_and_table_cell_carry_the_interval_with_n_replicates_of_seed_and_split() -> None:
    records = [  # seed 0 on the packed split and on re-drawn split 7: two replicates, not one
        result("a", seed=0, macro_f1=0.80),
        result("b", seed=0, split_seed=7, macro_f1=0.84),
        result("c", seed=1, split_seed=7, macro_f1=0.90),
    ]
    summary = tables.aggregate(frame_of(records))
    row = summary[summary["metric"] == "macro_f1"].iloc[0]
    assert row["n"] == 3
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(stats.t_interval([0.80, 0.84, 0.90]))
    table = tables.results_table(summary, metric="macro_f1")
    low, high = stats.t_interval([0.80, 0.84, 0.90])
    assert table.sub_text("CASS · CNN (resnet18)", "10%") == f"[{low:.4f}, {high:.4f}]"


def test_paired_test_agrees_with_scipy_ttest_rel_and_exact_wilcoxon() -> None:
    cass, dino = [0.85, 0.87, 0.90, 0.82], [0.80, 0.84, 0.86, 0.83]
    test = stats.paired_test(cass, dino)
    expected = scipy_stats.ttest_rel(cass, dino)
    assert test.n == 4 and test.df == 3
    assert test.t == pytest.approx(expected.statistic) and test.p_t == pytest.approx(
        expected.pvalue
    )
    diffs = [a - b for a, b in zip(cass, dino, strict=True)]
    by_hand = (sum(diffs) / 4) / (pd.Series(diffs).std() / 2)
    assert test.t == pytest.approx(by_hand)
    wilcoxon = scipy_stats.wilcoxon(cass, dino, method="exact").pvalue
    assert test.p_wilcoxon == pytest.approx(wilcoxon) and test.p_wilcoxon == pytest.approx(0.25)
    assert test.mean_diff == pytest.approx(0.0275)


def test_exact_wilcoxon_cannot_reach_five_percent_with_five_pairs_hence_the_t_test() -> None:
    test = stats.paired_test([0.9, 0.8, 0.85, 0.7, 0.75], [0.8, 0.75, 0.7, 0.6, 0.7])
    assert test.p_wilcoxon == pytest.approx(0.0625)  # every pair favours CASS: still 0.0625
    assert test.p_t < 0.05


def test_paired_p_is_undefined_for_one_pair_or_equal_differences() -> None:
    one = stats.paired_test([0.9], [0.8])
    assert one.n == 1 and math.isnan(one.p_t) and one.mean_diff == pytest.approx(0.1)
    same = stats.paired_test([0.80, 0.84], [0.70, 0.74])  # both + 0.1 (up to float noise)
    assert math.isnan(same.t) and math.isnan(same.p_t)
    with pytest.raises(ValueError, match="equal length"):
        stats.paired_test([0.1, 0.2], [0.1])


def test_methods_are_paired_by_seed_and_split_not_by_order() -> None:
    cass = {(None, 0): 0.85, (None, 1): 0.87, (None, 2): 0.90, (3, 0): 0.95}
    dino = {(None, 2): 0.86, (None, 0): 0.80, (None, 1): 0.84, (None, 4): 0.10, (5, 0): 0.10}
    records = [
        result(f"{method}-{split}-{seed}", method=method, seed=seed, split_seed=split,
               macro_f1=value)
        for method, values in (("cass", cass), ("dino", dino))
        for (split, seed), value in values.items()
    ]  # fmt: skip
    tests = paired.paired_tests(frame_of(records), {("demo", "demo-synthetic"): "macro_f1"})
    row = tests.set_index(["method", "baseline"]).loc[("cass", "dino")]
    expected = scipy_stats.ttest_rel([0.85, 0.87, 0.90], [0.80, 0.84, 0.86])
    assert row["n"] == 3 and row["df"] == 2 and row["replicates"] == "s0 s1 s2"
    assert row["p_t"] == pytest.approx(expected.pvalue)
    assert row["mean_method"] == pytest.approx(0.8733333) and row["metric"] == "macro_f1"


def test_cass_plus_is_tested_against_cass_dino_and_supervised_and_every_method_against_its_twin(
) -> None:  # fmt: skip
    methods = ("dino", "supervised", "cass", "cass_plus", "simclr", "mae")
    records = [
        result(f"{m}{s}", method=m, seed=s, macro_f1=0.5 + 0.05 * i + 0.01 * s * s)
        for i, m in enumerate(methods)
        for s in (0, 1, 2)
    ]
    tests = paired.paired_tests(frame_of(records), {("demo", "demo-synthetic"): "macro_f1"})
    assert list(zip(tests["method"], tests["baseline"], strict=True)) == [  # in paper order
        ("dino", "supervised"), ("simclr", "supervised"), ("mae", "supervised"),
        ("cass", "dino"), ("cass", "supervised"),
        ("cass_plus", "dino"), ("cass_plus", "supervised"), ("cass_plus", "cass"),
    ]  # fmt: skip


def test_cli_shows_the_paired_table_and_writes_paired_tests_csv(tmp_path: Path) -> None:
    cass, supervised = (0.85, 0.87, 0.90), (0.80, 0.84, 0.86)
    records = [
        result(f"{method}{seed}", method=method, seed=seed, macro_f1=value)
        for method, values in (("cass", cass), ("supervised", supervised))
        for seed, value in enumerate(values)
    ]
    write_tree(tmp_path, records)
    assert main([str(tmp_path), "--no-plots"]) == 0
    markdown = (tmp_path / "summary" / "results.md").read_text(encoding="utf-8")
    p = scipy_stats.ttest_rel(cass, supervised).pvalue
    assert f"| CASS vs Supervised · CNN | **+0.0400 p={p:.3f} (n=3)** [" in markdown
    assert "paired t-test (scipy ttest_rel, df = n − 1)" in markdown
    assert "95 % t-interval of the mean" in markdown
    csv = pd.read_csv(tmp_path / "summary" / "paired_tests.csv")
    assert list(csv.columns) == list(paired.TEST_COLUMNS)
    assert csv["p_t"].item() == pytest.approx(p) and csv["p_wilcoxon"].item() == 0.25


def test_a_split_seed_grid_pools_splits_and_seeds_as_replicates_not_as_an_ablation(
    tmp_path: Path,
) -> None:
    replicates = [(split, seed) for split in (0, 1) for seed in (0, 1)]
    records = [
        result(f"s{a}{b}", seed=b, split_seed=a, macro_f1=0.8 + 0.01 * (2 * a + b))
        for a, b in replicates
    ]
    overrides = [[f"split_seed={split}", f"seed={seed}", "speed.compile=true", "keep_weights=false"]
                 for split, seed in replicates]  # fmt: skip
    write_tree(tmp_path, records, overrides=overrides)
    assert main([str(tmp_path), "--no-plots"]) == 0
    markdown = (tmp_path / "summary" / "results.md").read_text(encoding="utf-8")
    assert "ablation" not in markdown and "(n=4)" in markdown and "4 of 4" in markdown
