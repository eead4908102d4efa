"""The real solar-cell task: EL scans from the elpv-dataset package, module-disjoint fixed split."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cass_hpc.data.resplit import redraw
from cass_hpc.data.shards import SPLITS, ShardReader, read_manifest
from preprocess.__main__ import main
from preprocess.readers.elpv import CLASSES, data_dir, read_cells, read_elpv, split_of_run

LABELS = data_dir() / "labels.csv"


def test_cells_fall_into_the_ten_type_runs_the_split_was_set_on() -> None:
    cells = read_cells(LABELS)
    assert len(cells) == 2624 and len({c.run for c in cells}) == 10
    test = [c for c in cells if split_of_run(c.run) == "test"]
    assert len(test) == 480 and {c.kind for c in test} == {"mono", "poly"}
    starts = sorted({c.run: c.path for c in reversed(test)}.values())
    assert starts == ["images/cell0541.png", "images/cell2145.png", "images/cell2397.png"]
    val = Counter(c.label for c in cells if split_of_run(c.run) == "val")
    assert min(val[label] for label in range(len(CLASSES))) >= 3  # every class seen in val


def test_pack_gives_three_classes_in_a_fixed_split_with_no_module_run_in_two(
    tmp_path: Path,
) -> None:
    out = tmp_path / "elpv"
    assert main(["elpv", "package", str(out), "--image-size", "16", "--per-class", "2"]) == 0
    manifest = read_manifest(out)
    assert manifest.classes == CLASSES and not manifest.synthetic
    assert all(manifest.class_counts[s][c] == 2 for s in SPLITS for c in CLASSES)
    run_of = {f"elpv/{Path(c.path).stem}": c.run for c in read_cells(LABELS)}
    runs = {s: {run_of[i] for i in ShardReader(manifest, s).ids} for s in SPLITS}
    assert runs["test"] <= {3, 6, 8} and runs["val"] == {7}
    assert not runs["train"] & (runs["val"] | runs["test"])
    with pytest.raises(ValueError, match="module-disjoint split .* use split_seed=null"):
        redraw(manifest, 1)  # a re-drawn split would mix modules across train and test


def test_packed_scans_are_real_grey_images_replicated_to_rgb(tmp_path: Path) -> None:
    out = tmp_path / "elpv"
    assert main(["elpv", "package", str(out), "--image-size", "32", "--per-class", "1"]) == 0
    reader = ShardReader(read_manifest(out), "train")
    first, second = reader.image(0), reader.image(1)
    assert first.shape == (32, 32, 3) and first.dtype == np.uint8
    assert (first[..., 0] == first[..., 1]).all() and (first[..., 1] == first[..., 2]).all()
    assert not np.array_equal(first, second) and first.std() > 5  # a scan, not a flat fill


def test_the_functional_cap_draws_from_train_only_by_the_seed() -> None:
    def functional_ids(seed: int) -> dict[str, set[str]]:
        result = read_elpv(cap_functional=800, seed=seed)
        return {
            split: {s.sample_id for s in result.samples if s.split == split and s.label == 0}
            for split in SPLITS
        }

    zero, one = functional_ids(0), functional_ids(1)
    assert len(zero["train"]) == len(one["train"]) == 800 and zero["train"] != one["train"]
    assert (len(zero["val"]), len(zero["test"])) == (152, 257) and zero["test"] == one["test"]
    uncapped = read_elpv(cap_functional=0).samples
    assert sum(s.label == 0 and s.split == "train" for s in uncapped) == 1099


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--per-class", "0"], "--per-class must be at least 1 (one image per split), got 0"),
        (["--cap-functional", "-5"], "--cap-functional must be 0 (no cap) or more, got -5"),
    ],
)
def test_a_bad_option_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str], message: str
) -> None:
    assert main(["elpv", "package", str(tmp_path / "out"), *option]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not (tmp_path / "out").exists()


def test_a_missing_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "elpv_dataset", None)  # import raises ImportError
    with pytest.raises(ValueError, match="pip install elpv-dataset$"):
        data_dir()


def test_a_labels_file_in_another_order_is_refused(tmp_path: Path) -> None:
    lines = LABELS.read_text().splitlines()
    moved = tmp_path / "labels.csv"
    moved.write_text("\n".join(lines[1:] + lines[:1]) + "\n")  # first mono cell moved to the end
    with pytest.raises(ValueError, match=r"module-type runs of \(59, 300, .*, 1\) cells"):
        read_cells(moved)


def test_a_probability_that_is_not_a_third_is_refused(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("images/cell0001.png  0.5  mono\n")
    with pytest.raises(ValueError, match=r"line 1: defect probability '0.5' is not 0, 1/3"):
        read_cells(labels)


@pytest.mark.slow  # ~1 min: make task-elpv at a tiny budget (the full task: docs/results)
def test_make_task_elpv_packs_runs_and_writes_its_page(tmp_path: Path) -> None:
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    tiny = "image_size=32 finetune.max_epochs=1 pretrain.batch_size=16"
    command = ["make", "-s", "task-elpv", f"RUNS={tmp_path / 'runs'}",
               f"ELPV_DATA={tmp_path / 'elpv'}", f"PAGE_DIR={tmp_path / 'page'}",
               "TASK_EPOCHS=1", "TASK_SEEDS=0", "TASK_METHODS=cass_plus,supervised",
               "TASK_DINO=", "TASK_MAE=mae", f"TASK_EXTRA={tiny}",
               f"PYTHON={sys.executable}"]  # fmt: skip
    proc = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = list((tmp_path / "runs" / "elpv").rglob("results.json"))
    assert len(results) == 5  # CASS+ and supervised × CNN and ViT, MAE × ViT
    assert "best pretraining for the CNN on elpv at 10%" in proc.stdout
    page = (tmp_path / "page" / "elpv.md").read_text()
    assert "| MAE | ViT (vit_tiny_patch16_224) |" in page and "elpv: the grid took" in proc.stdout
