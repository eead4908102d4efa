"""The real radio-galaxy task: FIRST cutouts from the firstgalaxydata package, sky-region split."""

from __future__ import annotations

import sys
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cass_hpc.data.resplit import redraw
from cass_hpc.data.shards import SPLITS, ShardReader, read_manifest
from preprocess.__main__ import main
from preprocess.readers import radiogalaxy
from preprocess.readers.decode import ImageDecodeError
from preprocess.readers.radiogalaxy import (
    CLASSES,
    archive_path,
    open_member,
    parse_member,
    read_galaxies,
    read_radiogalaxy,
    split_of,
)


def _separation_arcmin(a: tuple[float, float], b: np.ndarray) -> np.ndarray:
    """Angular distance from (ra, dec) ``a`` to each row of ``b``, degrees in, arcmin out."""
    ra, dec = np.radians(a)
    other = np.radians(b)
    cos = np.sin(dec) * np.sin(other[:, 1]) + np.cos(dec) * np.cos(other[:, 1]) * np.cos(
        other[:, 0] - ra
    )
    return np.degrees(np.arccos(np.clip(cos, -1, 1))) * 60


def test_no_train_cutout_overlaps_a_test_or_val_cutout() -> None:
    result = read_radiogalaxy()
    position = {f"radiogalaxy/{g.member[len('galaxy_data/all/'):-4]}": (g.ra, g.dec)
                for g in read_galaxies(archive_path())}  # fmt: skip
    where = {s: np.array([position[x.sample_id] for x in result.samples if x.split == s])
             for s in SPLITS}  # fmt: skip
    assert {s: len(where[s]) for s in SPLITS} == {"train": 1546, "val": 134, "test": 447}
    closest = min(_separation_arcmin(tuple(p), where["train"]).min() for p in where["test"])
    assert closest > 9 * 2  # a cutout spans 9′: two cutouts this far apart share no sky
    closest_val = min(_separation_arcmin(tuple(p), where["train"]).min() for p in where["val"])
    assert closest_val > 9
    counts = Counter((s.split, CLASSES[s.label]) for s in result.samples)
    assert min(counts[split, name] for split in SPLITS for name in CLASSES) >= 20
    assert len(result.skipped) == 31  # 30 at a band's edge, 1 blank


def test_pack_gives_four_classes_in_the_fixed_split_that_split_seed_may_not_redraw(
    tmp_path: Path,
) -> None:
    out = tmp_path / "radiogalaxy"
    assert main(["radiogalaxy", "package", str(out), "--image-size", "32", "--per-class", "2"]) == 0
    manifest = read_manifest(out)
    assert manifest.classes == CLASSES and not manifest.synthetic
    assert all(manifest.class_counts[s][c] == 2 for s in SPLITS for c in CLASSES)
    for split in SPLITS:
        reader = ShardReader(manifest, split)
        decs = {float(i.split("/")[-1].split("_")[1]) for i in reader.ids}
        assert {split_of(d) for d in decs} == {split}
    train = ShardReader(manifest, "train")
    images = np.stack([train.image(i) for i in range(len(train.ids))])
    assert images.shape == (8, 32, 32, 3)
    centre = images[:, 8:24, 8:24].reshape(8, -1).max(axis=1)
    assert (centre > 5).all() and centre.max() > 80  # the central sources survive crop + resize
    with pytest.raises(ValueError, match="use split_seed=null"):
        redraw(manifest, 1)


def test_the_crop_keeps_the_centre_of_the_cutout() -> None:
    archive = archive_path()
    member = read_galaxies(archive)[0].member
    whole = np.asarray(open_member(str(archive), member, crop=0))[..., 0]
    centre = np.asarray(open_member(str(archive), member, crop=150))[..., 0]
    assert whole.shape == (300, 300) and centre.shape == (150, 150)
    assert np.array_equal(centre, whole[75:225, 75:225])


def test_a_label_that_contradicts_its_folder_is_refused() -> None:
    with pytest.raises(ValueError, match=r"label id 2 does not match its folder 'FRI'"):
        parse_member("galaxy_data/all/FRI/1.0_2.0_2_Gendre.png")
    with pytest.raises(ValueError, match=r"expected <RA>_<DEC>_<label>_<catalogue>.png"):
        parse_member("galaxy_data/all/FRI/galaxy.png")


def test_an_archive_with_other_counts_or_a_broken_member_is_refused(tmp_path: Path) -> None:
    small = tmp_path / "galaxy_data.zip"
    with zipfile.ZipFile(small, "w") as opened:
        opened.writestr("galaxy_data/all/FRI/1.0_2.0_0_Gendre.png", b"not a png")
    with pytest.raises(ValueError, match=r"class counts \{'FRI': 1, 'FRII': 0"):
        read_galaxies(small)
    with pytest.raises(ImageDecodeError, match=r"galaxy_data.zip:galaxy_data/all/FRI/1.0_2.0_0"):
        open_member(str(small), "galaxy_data/all/FRI/1.0_2.0_0_Gendre.png")


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--per-class", "0"], "--per-class must be at least 1 (one image per split), got 0"),
        (["--crop", "-1"], "--crop must be 0 (the whole 300×300 cutout) or more, got -1"),
    ],
)
def test_a_bad_option_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str], message: str
) -> None:
    assert main(["radiogalaxy", "package", str(tmp_path / "out"), *option]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not (tmp_path / "out").exists()


def test_a_missing_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(radiogalaxy, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"pip install firstgalaxydata==0.2.1$"):
        archive_path()


@pytest.mark.slow  # ~1 min: make task-radiogalaxy at a tiny budget (full: docs/results)
def test_make_task_radiogalaxy_packs_runs_and_writes_its_page(tmp_path: Path) -> None:
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    tiny = "image_size=32 finetune.max_epochs=1 pretrain.batch_size=16"
    command = ["make", "-s", "task-radiogalaxy", f"RUNS={tmp_path / 'runs'}",
               f"RADIOGALAXY_DATA={tmp_path / 'radiogalaxy'}", f"PAGE_DIR={tmp_path / 'page'}",
               "TASK_EPOCHS=1", "TASK_SEEDS=0", "TASK_METHODS=simclr,supervised",
               "TASK_DINO=", "TASK_MAE=", f"TASK_EXTRA={tiny}",
               f"PYTHON={sys.executable}"]  # fmt: skip
    proc = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(list((tmp_path / "runs" / "radiogalaxy").rglob("results.json"))) == 4
    page = (tmp_path / "page" / "radiogalaxy.md").read_text()
    assert "best pretraining for the ViT on radiogalaxy at 10%" in page
    assert (tmp_path / "page" / "radiogalaxy.png").stat().st_size > 10_000
