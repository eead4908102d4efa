"""The real-image check task: the UCI digit scans that ship inside scikit-learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cass_hpc.data.shards import ShardReader, read_manifest
from preprocess.__main__ import main
from preprocess.readers.digits import CLASSES, digit_image, read_digits


def test_the_reader_lists_every_scan_of_the_package_with_its_label() -> None:
    result = read_digits("sklearn")
    assert len(result.samples) == 1797 and result.classes == list(CLASSES)
    assert not result.synthetic and "scikit-learn" in result.source
    counts = np.bincount([s.label for s in result.samples], minlength=10)
    assert counts.min() >= 170  # about 180 per class
    image = np.asarray(digit_image(0))
    assert image.shape == (8, 8, 3) and image.max() > 200 and image.min() == 0  # ink on paper


def test_pack_keeps_n_per_class_and_records_its_source(tmp_path: Path) -> None:
    out = tmp_path / "digits"
    assert main(["digits", "sklearn", str(out), "--image-size", "16", "--per-class", "5"]) == 0
    manifest = read_manifest(out)
    assert manifest.name == "digits" and sum(manifest.splits.values()) == 50
    assert not manifest.synthetic
    labels = np.concatenate([ShardReader(manifest, s).labels for s in ("train", "val", "test")])
    assert np.bincount(labels).tolist() == [5] * 10


def test_an_unknown_source_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown digits source 'mnist'"):
        read_digits("mnist")
