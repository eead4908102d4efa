"""Ablation grids: the swept key read from each cell's state.json overrides, tables in the layout
of the paper's App. C/D, compared with the paper's ablation values."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from collect_fixtures import result, write_tree

from cass_hpc.collect import main
from cass_hpc.report import settings
from cass_hpc.report.records import parse_overrides


def ablation_tree(root: Path, key: str, values: dict[str, float], **extra: object) -> None:
    """A CASS grid sweeping ``key`` over ``values`` (the value → the CNN's micro-F1 at 100 %;
    the ViT gets 0.1 less, 10 % gets 0.2 less) × arms × fractions 10/100 % × seeds 0, 1 (seed 1
    is 0.02 higher), with the overrides a Hydra multirun records."""
    records, overrides = [], []
    for value, f1 in values.items():
        for arm in ("cnn", "vit"):
            for fraction in (0.1, 1.0):
                for seed in (0, 1):
                    score = f1 - (0.1 if arm == "vit" else 0) - (0.2 if fraction < 1 else 0)
                    record = result(
                        f"{value}-{arm}-{fraction}-{seed}", arm=arm, label_fraction=fraction,
                        seed=seed, micro_f1=score + 0.02 * seed, dataset="autoimmune",
                        experiment="ablation",
                    )  # fmt: skip
                    records.append(record | extra.get(value, {}).get(arm, {}))  # type: ignore[union-attr]
                    overrides.append([f"{key}={value}", f"label_fraction={fraction}", f"arm={arm}",
                                      f"seed={seed}", "experiment=ablation", "runs_dir=runs",
                                      "dataset.path=data/autoimmune"])  # fmt: skip
    write_tree(root, records, overrides)


def test_batch_size_grid_gives_app_c1_table_rows_per_value_columns_arm_by_fraction(
    tmp_path: Path,
) -> None:
    ablation_tree(tmp_path, "pretrain.batch_size", {"32": 0.85, "8": 0.88, "16": 0.87})
    assert main([str(tmp_path), "--no-plots"]) == 0
    markdown = (tmp_path / "summary" / "results.md").read_text(encoding="utf-8")
    assert (
        "## autoimmune — ablation: Batch size (pretrain.batch_size; paper App. C.1 / D.1, "
        "Tables 6 and 14); test micro_f1, mean ± variance over seeds (experiment ablation)"
    ) in markdown
    assert "| Batch size | CNN 10% | Transformer 10% | CNN 100% | Transformer 100% |" in markdown
    assert (
        "| 8 | **0.6900 ± 0.0002 (n=2)** [0.5629, 0.8171] | **0.5900 ± 0.0002 (n=2)** [0.4629, "
        "0.7171] | **0.8900 ± 0.0002 (n=2)** [0.7629, 1.0171] | **0.7900 ± 0.0002 (n=2)** "
        "[0.6629, 0.9171] |"
    ) in markdown
    rows = [line.split(" | ")[0] for line in markdown.splitlines() if line.startswith("| ")]
    assert rows[2:5] == ["| 8", "| 16 (paper)", "| 32"]
    assert "24 of 24 cells present" in markdown


def test_a_finetune_mode_grid_gives_one_row_per_mode_end_to_end_first(tmp_path: Path) -> None:
    ablation_tree(tmp_path, "finetune.mode", {"linear": 0.7, "e2e": 0.85})
    assert main([str(tmp_path), "--no-plots"]) == 0
    markdown = (tmp_path / "summary" / "results.md").read_text(encoding="utf-8")
    assert "ablation: Fine-tuning (finetune.mode; paper ours (linear probe))" in markdown
    rows = [line.split(" | ")[0] for line in markdown.splitlines() if line.startswith("| ")]
    assert "| Fine-tuning" in rows and rows[2:4] == ["| e2e (paper)", "| linear"]


def test_ablation_cells_are_compared_with_the_papers_ablation_table(tmp_path: Path) -> None:
    ablation_tree(tmp_path, "pretrain.batch_size", {"8": 0.88, "16": 0.87})
    assert main([str(tmp_path), "--no-plots"]) == 0
    compared = pd.read_csv(tmp_path / "summary" / "paper_comparison.csv", keep_default_na=False)
    assert set(compared["paper_table"]) == {6}  # Table 6: autoimmune batch size, 100 % only
    row = compared.query("setting == 'pretrain.batch_size=8' and arm == 'cnn'").iloc[0]
    assert row["paper_mean"] == 0.88285 and row["delta"] == pytest.approx(0.89 - 0.88285)
    assert len(compared) == 4  # 2 values × 2 arms at 100 %


def test_backbone_pair_rows_name_both_backbones_and_columns_the_slots(tmp_path: Path) -> None:
    extra = {
        "r50_densenet161": {"cnn": {"backbone": "resnet50"}, "vit": {"backbone": "densenet161"}}
    }
    ablation_tree(tmp_path, "model", {"paper_pair": 0.9, "r50_densenet161": 0.8}, **extra)
    assert main([str(tmp_path), "--no-plots"]) == 0
    markdown = (tmp_path / "summary" / "results.md").read_text(encoding="utf-8")
    assert "| Backbone pair | Arm 1 (cnn slot) 10% | Arm 2 (vit slot) 10% |" in markdown
    row = "| r50_densenet161 (resnet50 + densenet161) | 0.6100 ± 0.0002 (n=2) [0.4829, 0.7371] |"
    assert row in markdown
    assert "| paper_pair (paper) (resnet18 + vit_tiny_patch16_224) |" in markdown


def test_overrides_drop_plus_prefix_and_ignore_deletions_and_quotes() -> None:
    parsed = parse_overrides(["+pretrain.arm_optimizers.cnn=sgd", "~init", "model='r18_vitb16'",
                              "bad", 3, "++x.y=1"])  # fmt: skip
    assert parsed == {"pretrain.arm_optimizers.cnn": "sgd", "model": "r18_vitb16", "x.y": "1"}


def test_only_identity_keys_that_vary_within_a_dataset_become_the_setting() -> None:
    frame = pd.DataFrame({
        "experiment": ["e"] * 4, "dataset": ["d", "d", "d", "other"],
        "overrides": [
            {"pretrain.epochs": "50", "runs_dir": "a", "hydra.launcher.partition": "x",
             "seed": "0", "model": "paper_pair"},
            {"pretrain.epochs": "100", "runs_dir": "b", "hydra.launcher.partition": "y",
             "seed": "1", "model": "paper_pair"},
            {"runs_dir": "a", "model": "paper_pair"},
            {"pretrain.epochs": "7", "dataset.path": "p"},
        ],
    })  # fmt: skip
    annotated = settings.annotate(frame)
    assert list(annotated["setting"]) == [
        "pretrain.epochs=50",
        "pretrain.epochs=100",
        "pretrain.epochs=(default)",
        "",
    ]
    assert list(annotated["fixed_settings"]) == ["model=paper_pair"] * 3 + ["pretrain.epochs=7"]


def test_a_key_that_differs_only_between_methods_configures_its_method_and_is_not_swept() -> None:
    """DINO's own grid (``method.params.out_dim=4096``) beside the others': one table, DINO a row
    like the rest, its overrides named in the title; a key varied within one method is swept."""
    dino = {"method.params.out_dim": "4096", "pretrain.epochs": "4"}
    frame = pd.DataFrame({
        "experiment": ["e"] * 5, "dataset": ["d"] * 5,
        "method": ["dino", "dino", "simclr", "supervised", "cass"],
        "overrides": [dino, dino, {"pretrain.epochs": "4"}, {"pretrain.epochs": "4"},
                      {"pretrain.epochs": "4", "pretrain.batch_size": "8"}],
    })  # fmt: skip
    annotated = settings.annotate(frame)
    assert list(annotated["setting"]) == [""] * 5
    assert set(annotated["fixed_settings"]) == {
        "pretrain.epochs=4; cass: pretrain.batch_size=8; dino: method.params.out_dim=4096"
    }
    swept = frame.assign(method=["dino", "dino", "simclr", "supervised", "dino"])
    swept.at[4, "overrides"] = {**dino, "pretrain.batch_size": "8"}
    assert list(settings.annotate(swept)["setting"]) == [
        "pretrain.batch_size=(default)", "pretrain.batch_size=(default)",
        "pretrain.batch_size=(default)", "pretrain.batch_size=(default)", "pretrain.batch_size=8",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("key", "values", "ordered"),
    [
        ("pretrain.batch_size", ["32", "8", "16"], ["8", "16", "32"]),
        ("method.params.augment", ["blur", "solarize", "paper"], ["paper", "solarize", "blur"]),
        ("pretrain.epochs", ["(default)", "300", "50"], ["50", "300", "(default)"]),
        ("unknown.key", ["b", "a"], ["a", "b"]),
    ],
)
def test_swept_values_are_in_numeric_then_paper_order(
    key: str, values: list[str], ordered: list[str]
) -> None:
    assert settings.value_order(key, values) == ordered


def test_a_cell_with_a_non_paper_setting_is_not_compared_with_tables_2_to_5() -> None:
    assert settings.off_paper("", "model=paper_pair, pretrain.epochs=1") == ["pretrain.epochs=1"]
    assert settings.off_paper("pretrain.batch_size=16", "") == []
