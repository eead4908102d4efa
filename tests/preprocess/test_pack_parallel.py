"""Decoding in worker processes: the same bytes as one process, in the same order, and the same
errors; packing the same source twice gives byte-identical files."""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
from pathlib import Path

import numpy as np
import pytest

import preprocess.pack as pack_module
from cass_hpc.data.shards import ShardReader, read_manifest
from preprocess.__main__ import main
from preprocess.pack import pack
from preprocess.parallel import OrderedMap
from preprocess.readers import ImageDecodeError, Sample, open_image
from preprocess.readers.synthetic import read_synthetic


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def _vanished_disk() -> None:
    raise RuntimeError("disk vanished")


def _killed_like_the_oom_killer_does() -> None:
    if multiprocessing.parent_process() is None:  # never kill the test process itself
        raise RuntimeError("expected to run in a worker process")
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.fixture
def always_parallel(monkeypatch) -> None:
    """Start worker processes even for a pack that one process would finish in a blink."""
    monkeypatch.setattr(pack_module, "SERIAL_BELOW_S", 0.0)


def test_packing_the_same_source_twice_gives_byte_identical_files(tmp_path: Path) -> None:
    argv = ["synthetic", "shapes", "--per-class", "4", "--image-size", "12", "--shard-size", "5"]
    assert main([*argv, str(tmp_path / "a" / "ds"), "--workers", "1"]) == 0
    assert main([*argv, str(tmp_path / "b" / "ds"), "--workers", "1"]) == 0
    first, second = _files(tmp_path / "a" / "ds"), _files(tmp_path / "b" / "ds")
    assert list(first) == [
        "manifest.json", "test-00000.h5", "train-00000.h5", "train-00001.h5", "val-00000.h5",
    ]  # fmt: skip
    assert first == second  # the manifest included: it holds no creation time


@pytest.mark.parametrize("store", ["resized", "original"])
def test_two_workers_write_the_same_bytes_as_one(
    tmp_path: Path, store: str, always_parallel: None, capsys
) -> None:
    argv = ["synthetic", "shapes", "--per-class", "6", "--image-size", "12", "--shard-size", "5"]
    argv += ["--store", store]
    assert main([*argv, str(tmp_path / "one" / "ds"), "--workers", "1"]) == 0
    assert "1 decoding process)" in capsys.readouterr().out
    assert main([*argv, str(tmp_path / "two" / "ds"), "--workers", "2"]) == 0
    assert "2 decoding processes)" in capsys.readouterr().out
    assert _files(tmp_path / "one" / "ds") == _files(tmp_path / "two" / "ds")
    reader = ShardReader(read_manifest(tmp_path / "two" / "ds"), "train")
    source_order = [
        s.sample_id for s in read_synthetic("shapes", image_size=12, per_class=6).samples
    ]
    assert len(reader) == 16 and reader.ids == [i for i in source_order if i in set(reader.ids)]
    assert reader.image(0).shape == (12, 12, 3)
    reader.close()


def _samples_with_bad_files(tmp_path: Path) -> tuple[list[Sample], list[str]]:
    samples = list(read_synthetic("shapes", image_size=8, per_class=8).samples)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n but the rest is missing")
    bad_ids = []
    for index in (3, 17):  # one in class 0, one in class 2
        sample = samples[index]
        samples[index] = Sample(
            sample.sample_id, sample.label, functools.partial(open_image, broken)
        )
        bad_ids.append(sample.sample_id)
    return samples, bad_ids


def _pack(samples: list[Sample], out: Path, **options) -> object:
    return pack(
        samples, ["disc", "square", "triangle", "stripes"], out, image_size=8, seed=0,
        source="synthetic:shapes", synthetic=True, params={}, shard_size=4, **options,
    )  # fmt: skip


def test_bad_images_found_by_workers_are_skipped_in_order_with_skip_bad(
    tmp_path: Path, always_parallel: None
) -> None:
    samples, bad_ids = _samples_with_bad_files(tmp_path)
    one = _pack(samples, tmp_path / "one" / "ds", workers=1, skip_bad=True)
    two = _pack(samples, tmp_path / "two" / "ds", workers=2, skip_bad=True)
    assert [s["id"] for s in two.skipped] == bad_ids
    assert all("broken.png" in s["reason"] for s in two.skipped)
    assert sum(two.splits.values()) == len(samples) - 2
    assert _files(one.root) == _files(two.root)


def test_bad_image_found_by_a_worker_stops_the_pack_naming_the_file(
    tmp_path: Path, always_parallel: None
) -> None:
    samples, _ = _samples_with_bad_files(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ImageDecodeError) as info:
        _pack(samples, out, workers=2)
    assert str(info.value).startswith(f"{tmp_path / 'broken.png'}: ")
    assert str(info.value).endswith(" — fix or remove it, or pass --skip-bad to leave it out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.png"]  # nothing partial


def test_loader_exception_in_a_worker_leaves_no_output_and_no_staging(
    tmp_path: Path, always_parallel: None
) -> None:
    samples = list(read_synthetic("shapes", image_size=8, per_class=10).samples)
    samples[25] = Sample(samples[25].sample_id, samples[25].label, _vanished_disk)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="disk vanished"):
        _pack(samples, out, workers=2)
    assert list(tmp_path.iterdir()) == []


def test_a_worker_killed_mid_pack_stops_it_with_a_message_and_leaves_nothing(
    tmp_path: Path, always_parallel: None
) -> None:
    samples = list(read_synthetic("shapes", image_size=8, per_class=10).samples)
    samples[20] = Sample(samples[20].sample_id, samples[20].label, _killed_like_the_oom_killer_does)
    with pytest.raises(RuntimeError) as info:
        _pack(samples, tmp_path / "out", workers=2)
    assert str(info.value) == (
        "a decoding worker process died abruptly (killed, or out of memory?); "
        "re-run with fewer --workers or with --workers 1"
    )
    assert list(tmp_path.iterdir()) == []


def test_ordered_map_keeps_order_bounds_batches_and_reports_processes() -> None:
    items = list(range(37))
    parallel = OrderedMap(abs, [-i for i in items], workers=2, batch_size=4)
    assert list(parallel) == items and parallel.processes == 2
    short = OrderedMap(abs, [-i for i in items], workers=4, batch_size=4, serial_below_s=60)
    assert list(short) == items and short.processes == 1  # not worth starting processes
    assert list(OrderedMap(np.negative, [1, 2], workers=8, batch_size=4)) == [-1, -2]
