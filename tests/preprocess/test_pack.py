"""Packing: interruption safety, idempotent re-packs and the command line's behaviour."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console

from cass_hpc.data.shards import read_manifest
from preprocess.__main__ import main
from preprocess.pack import pack
from preprocess.readers import Sample
from preprocess.readers.synthetic import SHAPES_VERSION, read_synthetic


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f"{out.name}."))


def test_loader_exception_mid_pack_leaves_no_output_and_no_staging(tmp_path: Path) -> None:
    result = read_synthetic("shapes", image_size=8, per_class=10)

    def explode():
        raise RuntimeError("disk vanished")

    samples = list(result.samples)
    samples[25] = Sample(samples[25].sample_id, samples[25].label, explode)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="disk vanished"):
        pack(
            samples,
            result.classes,
            out,
            image_size=8,
            seed=0,
            source=result.source,
            synthetic=True,
            params={},
            shard_size=4,
        )
    assert not out.exists()
    assert _leftovers(out) == []


def _pack_synthetic(samples: list[Sample], out: Path, **options) -> object:
    return pack(
        samples,
        ["disc", "square", "triangle", "stripes"],
        out,
        image_size=8,
        seed=0,
        source="synthetic:shapes",
        synthetic=True,
        params={},
        **options,
    )


def test_class_too_small_for_the_split_is_named_with_its_count(tmp_path: Path) -> None:
    samples = read_synthetic("shapes", image_size=8, per_class=5).samples
    samples = [s for s in samples if s.label != 2 or s.sample_id.endswith(("0", "1"))]
    out = tmp_path / "out"
    with pytest.raises(ValueError) as info:
        _pack_synthetic(samples, out)
    assert str(info.value) == (
        "class 'triangle' has 2 image(s) to split 70/10/20; it needs at least 3 — add images, "
        "drop the class, or give the split yourself (csv: a split column)"
    )
    assert not out.exists() and _leftovers(out) == []


def test_progress_shows_one_bar_per_split_counting_that_split(tmp_path: Path) -> None:
    samples = read_synthetic("shapes", image_size=8, per_class=5).samples
    console = Console(file=io.StringIO(), width=100)
    manifest = _pack_synthetic(samples, tmp_path / "out", console=console)
    bars = [
        line.split() for line in console.file.getvalue().splitlines() if line.startswith("packing ")
    ]
    assert [(words[1], words[-2]) for words in bars] == [
        (split, f"{count}/{count}") for split, count in manifest.splits.items()
    ]
    assert manifest.splits == {"train": 12, "val": 4, "test": 4}  # not 20/20 under "test"


def test_loader_that_cannot_reach_worker_processes_is_named_before_packing(
    tmp_path: Path,
) -> None:
    samples = list(read_synthetic("shapes", image_size=8, per_class=3).samples)
    first = samples[0]
    samples[0] = Sample(first.sample_id, first.label, lambda: first.load())
    out = tmp_path / "out"
    with pytest.raises(ValueError) as info:
        _pack_synthetic(samples, out, workers=2)
    message = str(info.value)
    assert message.startswith("shapes/disc/00000: its loader cannot be sent to worker processes")
    assert message.endswith("a module-level function, or pass --workers 1")
    assert not out.exists() and _leftovers(out) == []
    assert _pack_synthetic(samples, out, workers=1).splits == {"train": 4, "val": 4, "test": 4}


def test_original_store_is_recorded_in_params_and_resized_is_left_out(tmp_path: Path) -> None:
    argv = ["synthetic", "shapes", "--per-class", "3", "--image-size", "8"]
    assert main([*argv, str(tmp_path / "r")]) == 0
    assert main([*argv, str(tmp_path / "o"), "--store", "original", "--workers", "1"]) == 0
    resized, original = read_manifest(tmp_path / "r"), read_manifest(tmp_path / "o")
    assert "store" not in resized.params and resized.store == "resized"
    assert original.params["store"] == "original" and original.store == "original"
    assert original.image_size == 8  # the synthetic images are drawn at --image-size


def test_summary_states_images_per_second(tmp_path: Path, capsys) -> None:
    out = tmp_path / "s"
    assert main(["synthetic", "shapes", str(out), "--per-class", "3", "--image-size", "8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("packed 12 images in ")
    assert " images/s, 1 decoding process) → " in lines[-1] and lines[-1].endswith(str(out))


def test_repack_with_same_options_is_up_to_date(tmp_path: Path, capsys) -> None:
    out = tmp_path / "shapes"
    argv = ["synthetic", "shapes", str(out), "--per-class", "3", "--image-size", "8"]
    assert main(argv) == 0
    manifest_mtime = (out / "manifest.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(argv) == 0
    assert "up to date" in capsys.readouterr().out
    assert (out / "manifest.json").stat().st_mtime_ns == manifest_mtime


def test_repack_with_different_options_needs_overwrite(tmp_path: Path, capsys) -> None:
    out = tmp_path / "shapes"
    argv = ["synthetic", "shapes", str(out), "--per-class", "3", "--image-size", "8"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "different packed dataset" in err and "seed: 0 → 1" in err and "--overwrite" in err
    assert read_manifest(out).seed == 0  # untouched, and verified whole
    assert _leftovers(out) == []
    assert main([*argv, "--seed", "1", "--overwrite"]) == 0
    assert read_manifest(out).seed == 1
    assert _leftovers(out) == []


def test_params_record_reader_source_and_options(tmp_path: Path) -> None:
    assert (
        main(
            [
                "synthetic",
                "shapes",
                str(tmp_path / "s"),
                "--per-class",
                "3",
                "--image-size",
                "8",
                "--shard-size",
                "5",
                "--seed",
                "2",
            ]
        )
        == 0
    )
    params = read_manifest(tmp_path / "s").params
    assert params == {
        "reader": "synthetic",
        "src": "synthetic:shapes",
        "generator": "shapes",
        "per_class": 3,
        "version": SHAPES_VERSION,
        "image_size": 8,
        "seed": 2,
        "shard_size": 5,
    }


def test_cli_bad_input_is_one_line_error_with_exit_code_2(tmp_path: Path, capsys) -> None:
    code = main(["folder", str(tmp_path / "missing"), str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert "missing: not a directory" in captured.err and "Traceback" not in captured.err


def test_cli_refuses_output_inside_source(tmp_path: Path, capsys) -> None:
    for cls in ("a", "b"):
        (tmp_path / "src" / cls).mkdir(parents=True)
    assert main(["folder", str(tmp_path / "src"), str(tmp_path / "src" / "packed")]) == 2
    assert "OUT lies inside SRC" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--help"], ["folder", "synthetic", "examples:"]),
        (
            ["folder", "--help"],
            [
                "SRC/<split>/<class>/<image>",
                "SRC/<class>/<image>",
                "--skip-bad",
                "--image-size",
                "--overwrite",
                "--store {resized,original}",
                "--workers",
            ],
        ),
        (["synthetic", "--help"], ["SYNTHETIC", "NOT medical", "--per-class"]),
    ],
)
def test_help_describes_readers_and_layouts(argv: list[str], expected: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    for text in expected:
        assert text in out


def _packed_with_raw_inside(tmp_path: Path) -> tuple[Path, Path]:
    """A packed dataset at OUT with a raw class tree under OUT/raw (the data a user keeps)."""
    out = tmp_path / "ds2"
    argv = ["synthetic", "shapes", str(out), "--per-class", "3", "--image-size", "8"]
    assert main(argv) == 0
    raw = out / "raw"
    for cls in ("a", "b"):
        for index in range(3):
            (raw / cls).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (40 * index, 9, 9)).save(raw / cls / f"{index}.png")
    return raw, out


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_source_inside_output_is_refused_and_nothing_removed(tmp_path: Path, capsys) -> None:
    raw, out = _packed_with_raw_inside(tmp_path)
    before = _tree(out)
    capsys.readouterr()
    argv = ["folder", str(raw), str(out), "--image-size", "8", "--overwrite"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert f"SRC {raw} lies inside OUT {out}" in err
    assert _tree(out) == before and _leftovers(out) == []


def test_csv_and_its_images_inside_output_are_refused(tmp_path: Path, capsys) -> None:
    raw, out = _packed_with_raw_inside(tmp_path)
    lines = ["file,label", *(f"{c}/{i}.png,{c}" for c in ("a", "b") for i in range(3))]
    (raw / "labels.csv").write_text("\n".join(lines) + "\n")
    before = _tree(out)
    capsys.readouterr()
    assert main(["csv", str(raw / "labels.csv"), str(out), "--image-size", "8", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"lies inside OUT {out}" in err, err
    assert _tree(out) == before


def test_csv_naming_images_inside_output_is_refused(tmp_path: Path, capsys) -> None:
    raw, out = _packed_with_raw_inside(tmp_path)
    lines = ["file,label", *(f"{raw}/{c}/{i}.png,{c}" for c in ("a", "b") for i in range(3))]
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join(lines) + "\n")
    before = _tree(out)
    capsys.readouterr()
    assert main(["csv", str(csv), str(out), "--image-size", "8", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"a/0.png lies inside OUT {out}" in err, err
    assert _tree(out) == before


def test_overwrite_refuses_a_directory_holding_more_than_a_pack(tmp_path: Path, capsys) -> None:
    out = tmp_path / "ds"
    argv = ["synthetic", "shapes", str(out), "--per-class", "3", "--image-size", "8"]
    assert main(argv) == 0
    (out / "notes.txt").write_text("keep me")
    before = _tree(out)
    capsys.readouterr()
    assert main([*argv, "--seed", "1", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out}: ") and err.count("\n") == 1, err
    assert "notes.txt" in err and "--overwrite" in err
    assert _tree(out) == before and read_manifest(out).seed == 0


def test_overwrite_refuses_a_manifest_that_is_not_ours(tmp_path: Path, capsys) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    (out / "manifest.json").write_text('{"app": "someone else\'s"}')
    argv = ["synthetic", "shapes", str(out), "--per-class", "3", "--image-size", "8"]
    assert main([*argv, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out}: ") and err.count("\n") == 1, err
    assert "not a packed dataset" in err
    assert (out / "manifest.json").read_text() == '{"app": "someone else\'s"}'


def test_images_far_smaller_than_image_size_get_one_warning_per_pack(
    tmp_path: Path, capsys
) -> None:
    src = tmp_path / "src"
    for cls in ("a", "b"):
        (src / cls).mkdir(parents=True)
        for index in range(3):
            Image.new("RGB", (32, 24), (40 * index, 9, 9)).save(src / cls / f"{index}.png")
    Image.new("RGB", (1, 1), (1, 2, 3)).save(src / "a" / "0.png")
    Image.new("RGB", (40, 7), (1, 2, 3)).save(src / "b" / "2.png")  # 7 < 32 / 4 on its short side
    assert main(["folder", str(src), str(tmp_path / "out"), "--image-size", "32"]) == 0
    lines = capsys.readouterr().out.splitlines()
    warnings = [line for line in lines if "upscaled" in line]
    assert warnings == [
        "warning: 2 images had a shorter side under 1/4 of --image-size 32 and were upscaled "
        "(first: a/0.png, 1×1 px) — check them, or pack at a smaller --image-size"
    ]
    assert main(["folder", str(src), str(tmp_path / "fine"), "--image-size", "24"]) == 0
    assert "upscaled" in capsys.readouterr().out  # 1×1 still is
    Image.new("RGB", (8, 8)).save(src / "a" / "0.png")
    Image.new("RGB", (40, 8)).save(src / "b" / "2.png")
    assert main(["folder", str(src), str(tmp_path / "ok"), "--image-size", "32"]) == 0
    assert "upscaled" not in capsys.readouterr().out  # 8 is 1/4 of 32: not far smaller
