"""A task's results page (collect --page): per method and arm the score, the paired Δ against
supervised, the k-NN start → end and the pretraining time, the verdict lines and one PNG."""

from __future__ import annotations

from pathlib import Path

import pytest

from cass_hpc.collect import main
from tests.collect_fixtures import pretrain, result, write_tree

# macro-F1 per (method, arm) over seeds 0, 1, 2: SimCLR beats supervised on the ViT on every
# seed, CASS is below supervised on the CNN
F1 = {
    ("simclr", "cnn"): (0.70, 0.72, 0.74), ("simclr", "vit"): (0.60, 0.62, 0.61),
    ("cass", "cnn"): (0.66, 0.69, 0.69), ("cass", "vit"): (0.52, 0.50, 0.51),
    ("supervised", "cnn"): (0.70, 0.70, 0.71), ("supervised", "vit"): (0.50, 0.51, 0.50),
}  # fmt: skip


def _records() -> list[dict[str, object]]:
    records = []
    for (method, arm), scores in F1.items():
        for seed, score in enumerate(scores):
            block, extra = None, {}
            if method == "simclr":  # one run per arm: k-NN 0.40 → 0.60 (CNN), 0.30 → 0.50
                start = {"cnn": 0.40, "vit": 0.30}[arm]
                knn = {arm: [start, start + 0.2]}
                block = pretrain(f"simclr-{arm}-{seed}", 60.0, "simclr", knn=knn, knn_from=0)
            elif method == "cass":  # one run for both arms, 120 s; its CNN k-NN falls
                knn = {"cnn": [0.40, 0.35], "vit": [0.30, 0.32]}
                block = pretrain(f"cass-{seed}", 120.0, knn=knn, knn_from=0)
            else:  # supervised: the k-NN of the weights it starts from
                extra = {"knn_start": {arm: {"cnn": 0.41, "vit": 0.29}[arm], "chance": 0.25}}
            cell = {"method": method, "arm": arm, "seed": seed, "macro_f1": score}
            record = result(f"{method}-{arm}-{seed}", **cell, dataset="elpv", experiment="elpv",
                            pretrain=block)  # fmt: skip
            records.append(record | extra)
    return records


def test_the_page_sets_each_method_beside_its_supervised_twin_with_knn_and_time(
    tmp_path: Path,
) -> None:
    write_tree(tmp_path / "runs", _records())
    out, pages = str(tmp_path / "s"), str(tmp_path / "page")
    assert main([str(tmp_path / "runs"), "--out", out, "--page", pages]) == 0
    page = (tmp_path / "page" / "elpv.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith("| ") and " | " in line]
    lines = {" | ".join(line.split(" | ")[:2]): line for line in rows}
    assert lines["| SimCLR | ViT (vit_tiny_patch16_224)"] == (
        "| SimCLR | ViT (vit_tiny_patch16_224) | **0.610 ± 0.010 (n=3)** | +0.107, p=0.00098 "
        "| 0.30 → 0.50 | 1 min 00 s |"
    )
    assert lines["| CASS | CNN (resnet18)"] == (
        "| CASS | CNN (resnet18) | 0.680 ± 0.017 (n=3) | -0.023, p=0.12 | 0.40 → 0.35 "
        "| 2 min 00 s |"
    )
    assert lines["| Supervised | CNN (resnet18)"] == (
        "| Supervised | CNN (resnet18) | 0.703 ± 0.006 (n=3) | (the yardstick) | 0.41 (start) | — |"
    )
    assert "- CASS · CNN did not beat supervised on elpv at 10%: Δ -0.023 (p=0.12, n=3)" in page
    assert "- pretraining made the CNN's features worse: 0.40 → 0.35 (k-NN, cass on elpv" in page
    assert "- best pretraining for the ViT on elpv at 10%: SimCLR 0.610" in page
    assert "![elpv: scores and k-NN per method](elpv.png)" in page
    assert (tmp_path / "page" / "elpv.png").stat().st_size > 10_000


def test_a_grid_with_only_swept_settings_gets_no_page_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [result("a", method="supervised"), result("b", method="supervised", seed=1)]
    write_tree(tmp_path / "runs", records, overrides=[["pretrain.lr=0.1"], ["pretrain.lr=0.2"]])
    assert main([str(tmp_path / "runs"), "--no-plots", "--page", str(tmp_path / "page")]) == 0
    assert "--page: no cell of a main grid" in capsys.readouterr().err
    assert not (tmp_path / "page").exists()
