"""Tests for the collector: results.json trees → the paper's tables (cass_hpc.report, .collect)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from collect_fixtures import pretrain, result, write_tree

from cass_hpc.collect import main
from cass_hpc.report import format as fmt
from cass_hpc.report import knn_start, plots, settings, tables, timing
from cass_hpc.report import records as rec

CNN = "CASS · CNN (resnet18)"
VIT = "CASS · ViT (vit_tiny_patch16_224)"


def frame_of(records: list[dict[str, object]]) -> pd.DataFrame:
    """Records parsed and deduplicated, as the collector does."""
    parsed = rec.records_frame(rec.parse_record(r) for r in records)
    frame, _ = rec.deduplicate(settings.annotate(parsed))
    return frame


def two_seed_records() -> list[dict[str, object]]:
    """CASS CNN at 10 % with seeds giving 0.8 and 0.9; CNN 100 % and ViT 10 % with one seed."""
    return [
        result("a0", seed=0, macro_f1=0.8),
        result("a1", seed=1, macro_f1=0.9),
        result("b0", label_fraction=1.0, seed=0, macro_f1=0.95),
        result("c0", arm="vit", seed=0, macro_f1=0.7),
    ]


def table_of(records: list[dict[str, object]], spread: str = "var") -> pd.DataFrame:
    """The formatted macro-F1 results table (cells) of one (experiment, dataset)."""
    return tables.results_table(
        tables.aggregate(frame_of(records)), spread, metric="macro_f1"
    ).cells


def test_cell_is_mean_and_sample_variance_over_seeds_with_count_by_default() -> None:
    table = table_of(two_seed_records())
    assert list(table.columns) == ["10%", "100%"]
    assert list(table.index) == [CNN, VIT]
    assert table.loc[CNN, "10%"] == "0.8500 ± 0.0050 (n=2)"


def test_std_option_reports_standard_deviation() -> None:
    assert table_of(two_seed_records(), spread="std").loc[CNN, "10%"] == "0.8500 ± 0.0707 (n=2)"


def test_single_seed_shows_no_spread_and_missing_cell_shows_dash() -> None:
    table = table_of(two_seed_records())
    assert table.loc[CNN, "100%"] == "0.9500 (n=1)"
    assert table.loc[VIT, "100%"] == "—"


def test_rows_follow_paper_order_cnn_then_vit_each_dino_cass_supervised() -> None:
    records = [
        result(f"{method}{arm}", method=method, arm=arm)
        for arm in ("vit", "cnn")
        for method in ("supervised", "cass", "dino")
    ]
    assert list(table_of(records).index) == [
        "DINO · CNN (resnet18)", "CASS · CNN (resnet18)", "Supervised · CNN (resnet18)",
        "DINO · ViT (vit_tiny_patch16_224)", "CASS · ViT (vit_tiny_patch16_224)",
        "Supervised · ViT (vit_tiny_patch16_224)",
    ]  # fmt: skip


def test_cass_plus_is_labelled_cass_plus_and_sorted_right_after_cass() -> None:
    methods = ("supervised", "cass_plus", "cass", "dino")
    records = [result(f"{m}{a}", method=m, arm=a) for a in ("vit", "cnn") for m in methods]
    labels = [row.split(" · ")[0] for row in table_of(records).index]
    assert labels == ["DINO", "CASS", "CASS+", "Supervised"] * 2
    others = {plots._colour(m) for m in ("dino", "cass", "supervised", "an unknown method")}
    assert plots._colour("cass_plus") not in others


def test_fraction_columns_sorted_ascending_in_percent() -> None:
    records = [result(f"k{f}", label_fraction=f) for f in (1.0, 0.01, 0.1)]
    assert list(table_of(records).columns) == ["1%", "10%", "100%"]


def test_best_mean_of_each_column_is_marked_across_both_arms() -> None:
    supervised_vit = "Supervised · ViT (vit_tiny_patch16_224)"
    records = [*two_seed_records(), result("s0", method="supervised", arm="vit", macro_f1=0.86)]
    table = tables.results_table(tables.aggregate(frame_of(records)), metric="macro_f1")
    assert table.best["10%"].to_dict() == {CNN: False, VIT: False, supervised_vit: True}
    assert table.best["100%"].to_dict() == {CNN: True, VIT: False, supervised_vit: False}


def test_duplicate_key_counted_once_newest_wins() -> None:
    records = [
        result("a0", macro_f1=0.1, created="2026-11-21T10:00:00Z"),
        result("a0", macro_f1=0.8, created="2026-11-21T12:00:00Z"),
        result("a0", macro_f1=0.2, created="2026-11-21T11:00:00Z"),
    ]
    frame, notes = rec.deduplicate(rec.records_frame(map(rec.parse_record, records)))
    assert len(frame) == 1
    assert "2 duplicate" in notes[0]
    table = tables.results_table(tables.aggregate(frame), metric="macro_f1").cells
    assert table.loc[CNN, "10%"] == "0.8000 (n=1)"


def test_two_keys_for_one_cell_and_seed_count_as_one_seed_with_a_note() -> None:
    records = [
        result("old", macro_f1=0.1, created="2026-11-21T10:00:00Z"),
        result("new", macro_f1=0.8, created="2026-11-21T12:00:00Z"),
    ]
    frame, notes = rec.deduplicate(rec.records_frame(map(rec.parse_record, records)))
    assert list(frame["key"]) == ["new"]
    assert "old, new" in notes[0] and "kept the newest (new)" in notes[0]


def test_coverage_counts_present_of_expected_cells() -> None:
    # methods {cass} × arms {cnn, vit} × fractions {0.1, 1.0} × seeds {0, 1} = 8; 4 present.
    assert tables.coverage(frame_of(two_seed_records())) == (4, 8)


def test_coverage_does_not_expect_an_arm_a_method_never_has() -> None:
    records = [result("s", method="supervised"), result("v", method="supervised", arm="vit"),
               result("m", method="mae", arm="vit")]  # fmt: skip
    assert tables.coverage(frame_of(records)) == (3, 3)  # no MAE · CNN: MAE pretrains ViTs
    assert (
        tables.coverage(frame_of([*records, result("m1", method="mae", arm="vit", seed=1)]))[1] == 6
    )  # a second seed: every (method, arm) pair is expected at it


def test_pretrain_time_sums_distinct_keys_per_seed_and_counts_shared_key_once() -> None:
    shared = pretrain("cass-s0", 60.0)
    records = [
        result("c1", arm="cnn", pretrain=shared),
        result("c2", arm="vit", pretrain=shared),
        result("c3", arm="cnn", label_fraction=1.0, pretrain=shared),
        result("d1", method="dino", arm="cnn", pretrain=pretrain("dino-cnn", 100.0, "dino")),
        result("d2", method="dino", arm="vit", pretrain=pretrain("dino-vit", 50.0, "dino")),
        result("s1", method="supervised"),
    ]
    per_seed = timing.pretrain_per_seed(frame_of(records)).set_index("method")
    assert per_seed.loc["dino", "wall_s"] == 150.0 and per_seed.loc["dino", "runs"] == 2
    assert per_seed.loc["cass", "wall_s"] == 60.0 and per_seed.loc["cass", "runs"] == 1
    assert "supervised" not in per_seed.index
    table = timing.pretrain_table(timing.pretrain_summary(frame_of(records))).cells
    assert list(table.index) == ["DINO", "CASS"]
    assert table.loc["DINO", "Time per seed (mean ± std)"] == "2 min 30 s"
    assert table.loc["CASS", "Total (all seeds)"] == "1 min 00 s"


def test_pretrain_time_mean_and_std_over_seeds() -> None:
    records = [
        result(f"c{seed}", seed=seed, pretrain=pretrain(f"p{seed}", wall_s, images_per_s=speed))
        for seed, wall_s, speed in ((0, 60.0, 100.0), (1, 70.0, 120.0))
    ]
    row = timing.pretrain_table(timing.pretrain_summary(frame_of(records))).cells.loc["CASS"]
    assert row["Time per seed (mean ± std)"] == "1 min 05 s ± 7.1 s"
    assert row["Total (all seeds)"] == "2 min 10 s"
    assert row["Images/s"] == "110.0"
    assert row["Seeds"] == "n=2"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(12.34, "12.3 s"), (65.0, "1 min 05 s"), (4380.0, "1 h 13 min"), (float("nan"), "—")],
)
def test_format_duration_reads_like_paper_table_1(seconds: float, text: str) -> None:
    assert fmt.format_duration(seconds) == text


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ([], "expected an object"),
        ({"schema": "cass-hpc-results/1"}, "missing required key(s): key, experiment"),
        ({**result("x"), "schema": "other/2"}, "schema 'other/2'"),
        ({**result("x"), "label_fraction": 0}, "'label_fraction'"),
        ({**result("x"), "metrics": {"macro_f1": "high"}}, "metric 'macro_f1'"),
        ({**result("x"), "created": "yesterday"}, "'created'"),
        ({**result("x"), "pretrain": {"key": "p"}}, "'pretrain.wall_s'"),
    ],
)
def test_parse_record_names_the_problem(raw: object, problem: str) -> None:
    with pytest.raises(rec.RecordError) as caught:
        rec.parse_record(raw)
    assert problem in str(caught.value)


def test_knn_monitor_fields_are_parsed_and_absent_in_an_old_record() -> None:
    block = pretrain("p", 60.0, knn={"cnn": [0.3, 0.5], "vit": [0.3, 0.4]}, knn_s=3.5)
    parsed = rec.parse_record(result("x", pretrain=block))
    assert parsed["pretrain_knn_epochs"] == [1, 2]
    assert parsed["pretrain_knn"] == {"cnn": [0.3, 0.5], "vit": [0.3, 0.4]}
    assert parsed["pretrain_knn_chance"] == 0.25 and parsed["pretrain_knn_s"] == 3.5
    assert (parsed["pretrain_knn_final_cnn"], parsed["pretrain_knn_final_vit"]) == (0.5, 0.4)
    old = rec.parse_record(result("y", pretrain=pretrain("p", 60.0)))
    assert old["pretrain_knn"] == {} and old["pretrain_knn_epochs"] == []
    assert old["pretrain_knn_chance"] is None and old["pretrain_knn_final_cnn"] is None
    frame = rec.records_frame([parsed, old, rec.parse_record(result("z"))])
    assert frame["pretrain_knn_final_cnn"].tolist()[0] == 0.5
    assert frame["pretrain_knn_final_cnn"].isna().tolist() == [False, True, True]


@pytest.mark.parametrize(
    "malformed",
    [
        {"knn": [0.5], "knn_epochs": [1]},
        {"knn": {"cnn": "high"}, "knn_epochs": [1]},
        {"knn": {"cnn": [0.5, 0.6]}, "knn_epochs": [1]},  # scores do not pair with the epochs
        {"knn": {"cnn": [0.5]}, "knn_epochs": "1"},
        {"knn_chance": "1/4", "knn_final": {"cnn": "best"}, "knn_s": -1.0},
        {"knn_final": [0.5]},
    ],
)
def test_a_malformed_knn_field_is_ignored_like_the_spread_and_the_cell_still_counts(
    malformed: dict[str, object],
) -> None:
    parsed = rec.parse_record(result("x", pretrain=pretrain("p", 60.0) | malformed))
    assert parsed["metric.macro_f1"] == 0.8 and parsed["pretrain_wall_s"] == 60.0
    assert parsed["pretrain_knn"] == {} and parsed["pretrain_knn_epochs"] == []
    assert parsed["pretrain_knn_chance"] is None and parsed["pretrain_knn_s"] is None
    assert parsed["pretrain_knn_final_cnn"] is None


def test_cli_writes_files_with_the_numbers(tmp_path: Path) -> None:
    write_tree(tmp_path, two_seed_records())
    assert main([str(tmp_path), "--no-plots"]) == 0
    summary = tmp_path / "summary"
    markdown = (summary / "results.md").read_text(encoding="utf-8")
    assert "demo-synthetic" in markdown and "macro_f1" in markdown
    line = "| CASS · CNN (resnet18) | **0.8500 ± 0.0050 (n=2)** [0.2147, 1.4853] | **0.9500 (n=1)**"
    assert line in markdown
    assert "4 of 8 cells present" in markdown
    latex = (summary / "results.tex").read_text(encoding="utf-8")
    assert "\\toprule" in latex and "\\bottomrule" in latex
    cell = "\\textbf{0.8500 $\\pm$ 0.0050 (n=2)} [0.2147, 1.4853]"
    assert f"CASS $\\cdot$ CNN (resnet18) & {cell} & " in latex
    assert "ViT (vit\\_tiny\\_patch16\\_224) & 0.7000 (n=1) & --- \\\\" in latex
    csv = pd.read_csv(summary / "results.csv")
    assert list(csv.columns) == list(tables.SUMMARY_COLUMNS)
    row = csv.query("metric == 'macro_f1' and arm == 'cnn' and label_fraction == 0.1")
    assert row["mean"].item() == pytest.approx(0.85) and row["n"].item() == 2
    assert row["var"].item() == pytest.approx(0.005)
    assert (summary / "pretrain_time.md").exists() and (summary / "pretrain_time.csv").exists()
    assert not list(summary.glob("*.tmp"))


def test_cli_pretrain_files_hold_the_times(tmp_path: Path) -> None:
    write_tree(tmp_path, [result("c", pretrain=pretrain("p", 65.0))])
    out = tmp_path / "elsewhere"
    assert main([str(tmp_path), "--out", str(out), "--no-plots"]) == 0
    markdown = (out / "pretrain_time.md").read_text(encoding="utf-8")
    assert "| CASS | 1 min 05 s | 1 min 05 s | 1 | 100.0 | n=1 |" in markdown
    assert "what pretraining handed to fine-tuning" in markdown  # the health table follows
    assert pd.read_csv(out / "pretrain_time.csv")["wall_s_mean"].item() == 65.0


def test_cli_warns_about_corrupt_json_by_path_and_skips_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(tmp_path, two_seed_records())
    broken = tmp_path / "store" / "broken" / "results.json"
    broken.parent.mkdir(parents=True)
    broken.write_text('{"schema": "cass-hpc-results/1", "key": ', encoding="utf-8")
    incomplete = tmp_path / "store" / "incomplete" / "results.json"
    incomplete.parent.mkdir(parents=True)
    incomplete.write_text(json.dumps({"schema": "cass-hpc-results/1", "key": "z"}))
    assert main([str(tmp_path), "--no-plots"]) == 0
    errors = capsys.readouterr().err.splitlines()
    assert any(str(broken) in line and "not valid JSON" in line for line in errors)
    assert any(str(incomplete) in line and "missing required key(s)" in line for line in errors)
    assert "0.8500 ± 0.0050 (n=2)" in (tmp_path / "summary" / "results.md").read_text()


@pytest.mark.parametrize("make", ["empty", "missing", "only-corrupt"])
def test_cli_exits_2_with_one_line_error_on_unusable_rundir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: str
) -> None:
    rundir = tmp_path / "runs"
    if make != "missing":
        rundir.mkdir()
    if make == "only-corrupt":
        (rundir / "results.json").write_text("not json", encoding="utf-8")
    assert main([str(rundir)]) == 2
    errors = capsys.readouterr().err.splitlines()
    error_lines = [line for line in errors if line.startswith("error")]
    assert len(error_lines) == 1 and str(rundir) in error_lines[0]
    assert not (rundir / "summary").exists()


def test_cli_unknown_metric_exits_2_listing_available(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(tmp_path, two_seed_records())
    assert main([str(tmp_path), "--metric", "top5_accuracy"]) == 2
    assert "balanced_accuracy, loss, macro_f1, micro_f1" in capsys.readouterr().err
    assert main([str(tmp_path), "--metric", "demoo=macro_f1"]) == 2  # a mistyped dataset
    assert "no dataset 'demoo' in the results; have: " in capsys.readouterr().err
    assert not (tmp_path / "summary").exists()


def test_cli_one_table_per_dataset(tmp_path: Path) -> None:
    write_tree(tmp_path, [result("a", dataset="set-b"), result("b", dataset="set-a")])
    assert main([str(tmp_path), "--metric", "balanced_accuracy", "--no-plots"]) == 0
    markdown = (tmp_path / "summary" / "results.md").read_text()
    assert markdown.index("## set-a") < markdown.index("## set-b")
    assert markdown.count("0.6000 (n=1)") == 2


@pytest.mark.parametrize(
    ("value", "text"), [(0.005, "0.0050"), (3.9e-05, "3.9e-05"), (1e-33, "0.0000"), (0.0, "0.0000")]
)
def test_format_value_keeps_paper_sized_variances_visible(value: float, text: str) -> None:
    assert fmt.format_value(value) == text


def test_pretrain_table_shows_final_loss_and_each_nets_spread_to_reveal_collapse() -> None:
    records = []
    for seed, loss, vit_spread in ((0, 0.002, 0.04), (1, 0.004, 0.06)):
        block = pretrain(f"p{seed}", 60.0) | {
            "loss": [0.3, loss],
            "spread": {"cnn": [5.0, 1.0], "vit": [2.0, vit_spread]},
        }
        records.append(result(f"c{seed}", seed=seed, pretrain=block))
    health = timing.pretrain_health_table(timing.pretrain_summary(frame_of(records)))
    row = health.cells.loc["CASS"]
    assert row["Final loss"] == "0.003"
    assert row["Final spread CNN / ViT"] == "1 / 0.05"


def test_pretrain_table_shows_each_nets_mean_final_knn_with_chance_and_monitor_time() -> None:
    def knn_run(key: str, seed: int, method: str, arm: str, knn: dict) -> dict[str, object]:
        block = pretrain(key, 60.0, method, knn=knn, knn_s=2.0 + seed)
        return result(f"{key}-{arm}", method=method, arm=arm, seed=seed, pretrain=block)

    records = [
        *(knn_run(f"c{s}", s, "cass", "cnn", {"cnn": [0.3, c], "vit": [0.3, v]})
          for s, c, v in ((0, 0.50, 0.46), (1, 0.54, 0.48))),
        knn_run("d-cnn", 0, "dino", "cnn", {"cnn": [0.4]}),  # DINO: one net per run, no ViT run
        # a run from before the monitor
        result("plus", method="cass_plus", pretrain=pretrain("old", 60.0, "cass_plus")),
    ]  # fmt: skip
    table = timing.pretrain_health_table(timing.pretrain_summary(frame_of(records))).cells
    assert table.loc["CASS", "k-NN CNN / ViT (chance)"] == "0.52 / 0.47 (0.25)"
    assert table.loc["CASS", "Monitor s"] == "2.5"
    assert table.loc["DINO", "k-NN CNN / ViT (chance)"] == "0.40 / — (0.25)"
    assert table.loc["CASS+", "k-NN CNN / ViT (chance)"] == "—"
    assert table.loc["CASS+", "Monitor s"] == "—"
    assert timing.format_knn(0.5, None, None) == "0.50 / —"  # chance unknown: left out
    # records from before epoch 0 was scored: no start, the end as in the column before
    assert table.loc["CASS", "k-NN CNN start → end"] == "— → 0.52"
    assert table.loc["DINO", "k-NN ViT start → end"] == "—"
    assert list(table.columns) == [
        "Final loss", "Final spread CNN / ViT", "k-NN CNN / ViT (chance)", "Monitor s",
        "k-NN CNN start → end", "k-NN ViT start → end",
    ]  # fmt: skip


def knn_records(dino_cnn: tuple[float, float]) -> list[dict[str, object]]:
    """digits: DINO·CNN over 3 seeds from ``dino_cnn`` = (start, end) with a little noise, CASS
    (both nets better than their start) over 2 seeds, and a CASS+ run from before epoch 0."""
    records = []
    for seed, noise in enumerate((-0.01, 0.0, 0.01)):
        scores = {"cnn": [dino_cnn[0] + noise, 0.6, dino_cnn[1] + noise]}
        block = pretrain(f"d{seed}", 60.0, "dino", knn=scores, knn_from=0)
        records.append(
            result(f"dino{seed}", method="dino", seed=seed, dataset="digits", pretrain=block)
        )
    for seed in (0, 1):
        block = pretrain(f"c{seed}", 60.0, knn={"cnn": [0.3, 0.5], "vit": [0.3, 0.4]}, knn_from=0)
        records.append(result(f"cass{seed}", seed=seed, dataset="digits", pretrain=block))
    old = pretrain("p", 60.0, "cass_plus", knn={"cnn": [0.6, 0.2]})  # epochs 1, 2: no start
    records.append(result("plus", method="cass_plus", dataset="digits", pretrain=old))
    return records


def test_the_knn_start_is_epoch_0_and_absent_from_a_record_before_it() -> None:
    new = rec.parse_record(knn_records((0.62, 0.55))[0])
    assert new["pretrain_knn_start_cnn"] == pytest.approx(0.61)
    assert new["pretrain_knn_start_vit"] is None  # DINO's run trained one net
    old = rec.parse_record(knn_records((0.62, 0.55))[-1])
    assert old["pretrain_knn_start_cnn"] is None and old["pretrain_knn_final_cnn"] == 0.2


def test_pretraining_that_ends_below_its_knn_start_is_called_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(tmp_path, knn_records((0.62, 0.55)))
    assert main([str(tmp_path), "--no-plots"]) == 0
    line = "pretraining made the CNN's features worse: 0.62 → 0.55 (k-NN, dino on digits, 3 seeds)"
    out = capsys.readouterr().out
    assert line in out and out.count("features worse") == 1  # not CASS, nor CASS+'s old record
    summary = tmp_path / "summary"
    assert line in (summary / "pretrain_time.md").read_text()
    assert line in (summary / "results.md").read_text()
    table = (summary / "pretrain_time.md").read_text()
    assert "k-NN CNN start → end" in table and "| 0.62 → 0.55 |" in table
    assert "| 0.30 → 0.50 | 0.30 → 0.40 |" in table and "| — → 0.20 | — |" in table
    frame = pd.read_csv(summary / "pretrain_time.csv").set_index("method")
    assert frame.loc["dino", "knn_start_cnn_mean"] == pytest.approx(0.62)
    assert frame.loc["dino", "knn_end_cnn_mean"] == pytest.approx(0.55)
    assert frame.loc["dino", "knn_start_cnn_seeds"] == 3
    assert pd.isna(frame.loc["cass_plus", "knn_start_cnn_mean"])


def test_pretraining_that_ends_at_or_above_its_knn_start_prints_no_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(tmp_path, knn_records((0.55, 0.55)))
    assert main([str(tmp_path), "--no-plots"]) == 0
    assert "features worse" not in capsys.readouterr().out
    table = (tmp_path / "summary" / "pretrain_time.md").read_text()
    assert "features worse" not in table and "| 0.55 → 0.55 |" in table


def test_a_drop_below_two_decimals_is_printed_with_three() -> None:
    assert knn_start._pair(0.554, 0.551) == "0.554 → 0.551"
    assert knn_start._pair(0.62, 0.55) == "0.62 → 0.55"
    assert knn_start._pair(0.5, 0.5) == "0.50 → 0.50"  # equal: no third decimal


def test_synthetic_results_are_marked_in_the_title(tmp_path: Path) -> None:
    write_tree(tmp_path, [result("c") | {"synthetic": True}])
    assert main([str(tmp_path), "--no-plots"]) == 0
    assert "SYNTHETIC" in (tmp_path / "summary" / "results.md").read_text()


def test_cells_from_a_collapsed_pretraining_are_called_out(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    warning = "COLLAPSE: the vit net's output spread has been below 0.1 for 2 epoch(s)"
    write_tree(tmp_path, [result("c1", arm="vit") | {"warnings": [warning]}, result("c2")])
    assert main([str(tmp_path), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "COLLAPSE" in out and "1 cell(s)" in out
    assert "COLLAPSE" in (tmp_path / "summary" / "results.md").read_text()


def test_item2_infinity_or_nan_in_a_metric_is_a_corrupt_record_left_out_of_every_mean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = [result("inf", seed=2), result("nan", seed=3)]
    paths = write_tree(tmp_path, [*two_seed_records(), *bad])
    for path, value in zip(paths[-2:], ("Infinity", "NaN"), strict=True):
        path.write_text(path.read_text().replace('"macro_f1": 0.8', f'"macro_f1": {value}'))
    assert main([str(tmp_path), "--no-plots"]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: {paths[-2]}: metric 'macro_f1' must be a finite number or null, got "
        "Infinity; skipped",
        f"warning: {paths[-1]}: metric 'macro_f1' must be a finite number or null, got NaN; "
        "skipped",
    ]
    assert "collected 4 cell result(s) from 6 results.json (2 skipped)" in captured.out
    assert "0.8500 ± 0.0050 (n=2)" in (tmp_path / "summary" / "results.md").read_text()


def test_item2_a_null_metric_is_still_no_value_and_a_non_finite_optional_one_is_ignored() -> None:
    raw = result("x") | {"val_metrics": {"macro_f1": float("inf")}}
    raw["metrics"] = {"macro_f1": 0.8, "auroc": None}
    parsed = rec.parse_record(raw)
    assert parsed["metric.macro_f1"] == 0.8 and pd.isna(parsed["metric.auroc"])
    assert pd.isna(parsed["val.macro_f1"])
