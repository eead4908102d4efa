"""Packing: interruption safety, idempotent re-packs and the command line's behaviour."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cass_hpc.data.shards import ShardError, read_manifest
from preprocess.__main__ import main
from preprocess.pack import pack
from preprocess.readers import Sample
from preprocess.readers.synthetic import SHAPES_VERSION, read_synthetic

REPO = Path(__file__).resolve().parents[2]


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


def test_sigkilled_pack_leaves_no_dataset_and_rerun_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "shapes"
    argv = ["synthetic", "shapes", str(out), "--per-class", "400", "--image-size", "64"]
    process = subprocess.Popen(
        [sys.executable, "-m", "preprocess", *argv],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    try:
        while not list(tmp_path.glob("shapes.partial-*/*.h5")):
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the pack never created its staging dir"
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()
    assert _leftovers(out) == [f"shapes.partial-{process.pid}"]
    assert not (out / "manifest.json").exists()
    with pytest.raises(ShardError, match="not a packed dataset"):
        read_manifest(out)

    assert main(argv) == 0
    assert _leftovers(out) == []
    assert sum(read_manifest(out).splits.values()) == 1600


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
    assert read_manifest(out).seed == 0
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
                "Training/<class>/<image>",
                "SRC/<class>/<image>",
                "--skip-bad",
                "--image-size",
                "--overwrite",
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
