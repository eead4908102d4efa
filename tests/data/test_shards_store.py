"""``store="original"``: images at their own size as PNG bytes, decoded by the reader, and the
training transforms that bring any size to the run's image_size."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from cass_hpc.data.dataset import ShardDataset
from cass_hpc.data.shards import (
    ShardError,
    ShardReader,
    ShardWriter,
    decode_png,
    encode_png,
    png_shape,
    read_manifest,
)
from cass_hpc.data.transforms import MultiCrop, eval_transform, paper_augmentation

CLASSES = ("benign", "malignant")
# (height, width): landscape, portrait, tiny, square; every split gets images of mixed sizes
SHAPES = [(30, 45), (52, 20), (1, 1), (33, 33), (17, 64), (40, 12)]


def _image(index: int, shape: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(index)
    return rng.integers(0, 256, (*shape, 3), dtype=np.uint8)


def _pack_original(root: Path, counts: dict[str, int] | None = None) -> dict[str, list]:
    counts = counts or {"train": 6, "val": 3, "test": 2}
    written: dict[str, list] = {}
    with ShardWriter(
        root, name="orig", classes=CLASSES, image_size=None, seed=0, source="unit-test",
        synthetic=True, params={}, shard_size=4, store="original",
    ) as writer:  # fmt: skip
        index = 0
        for split, count in counts.items():
            for i in range(count):
                image = _image(index, SHAPES[index % len(SHAPES)])
                # arrays and ready PNG bytes (as worker processes send them) are both accepted
                data = image if index % 2 else encode_png(image)
                writer.add(split, data, i % 2, f"{split}/{i}")
                written.setdefault(split, []).append(image)
                index += 1
        writer.commit()
    return written


def test_original_store_round_trips_every_image_at_its_own_size(tmp_path: Path) -> None:
    written = _pack_original(tmp_path / "ds")
    manifest = read_manifest(tmp_path / "ds")
    assert manifest.store == "original"
    assert manifest.image_size == 64  # the longest side stored
    assert [s.file for s in manifest.shards_for("train")] == ["train-00000.h5", "train-00001.h5"]
    for split, images in written.items():
        reader = ShardReader(manifest, split)
        assert len(reader) == len(images)
        for index, image in enumerate(images):
            got = reader.image(index)
            assert got.dtype == np.uint8 and got.shape == image.shape
            assert np.array_equal(got, image)  # lossless
        reader.close()


def test_original_shard_holds_png_bytes_and_their_sizes(tmp_path: Path) -> None:
    _pack_original(tmp_path / "ds")
    with h5py.File(tmp_path / "ds" / "train-00001.h5", "r") as handle:
        images = handle["images"]
        assert images.shape == (2,)
        assert h5py.check_vlen_dtype(images.dtype) == np.dtype(np.uint8)
        assert bytes(images[0][:8]) == b"\x89PNG\r\n\x1a\n"
        assert handle["sizes"][...].tolist() == [[17, 64], [40, 12]]  # SHAPES[4:6]


def test_the_same_images_give_byte_identical_original_shards(tmp_path: Path) -> None:
    _pack_original(tmp_path / "a" / "ds")
    _pack_original(tmp_path / "b" / "ds")
    files = sorted(p.name for p in (tmp_path / "a" / "ds").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b" / "ds").iterdir())
    for name in files:
        assert (tmp_path / "a" / "ds" / name).read_bytes() == (
            tmp_path / "b" / "ds" / name
        ).read_bytes(), name


def test_training_transforms_bring_original_sizes_to_fixed_size_batches(tmp_path: Path) -> None:
    _pack_original(tmp_path / "ds")
    manifest = read_manifest(tmp_path / "ds")
    torch.manual_seed(0)
    for split, transform in (("train", paper_augmentation(24)), ("val", eval_transform(24))):
        data = ShardDataset(manifest, split, transform)
        shapes = {data.reader.image(i).shape for i in range(len(data))}
        assert len(shapes) == len(data)  # really of different sizes on disk
        views, labels = next(iter(DataLoader(data, batch_size=len(data))))
        assert views.shape == (len(data), 3, 24, 24) and views.dtype == torch.float32
        assert labels.tolist() == [i % 2 for i in range(len(data))]
    dino = ShardDataset(manifest, "train", MultiCrop(24, 12, local_crops=2))
    crops, _ = next(iter(DataLoader(dino, batch_size=len(dino))))
    assert [tuple(c.shape) for c in crops] == [(6, 3, 24, 24)] * 2 + [(6, 3, 12, 12)] * 2


def test_resized_store_still_requires_square_images_of_image_size(tmp_path: Path) -> None:
    with ShardWriter(
        tmp_path / "ds", name="r", classes=CLASSES, image_size=8, seed=0, source="t",
        synthetic=True, params={},
    ) as writer:  # fmt: skip
        with pytest.raises(ValueError, match=r"^x: image must be uint8 \(8, 8, 3\), got uint8"):
            writer.add("train", np.zeros((8, 9, 3), np.uint8), 0, "x")


@pytest.mark.parametrize(
    ("image_size", "store", "message"),
    [
        (None, "resized", "image_size is required for store 'resized'"),
        (64, "original", "must be None for store 'original', got 64"),
        (None, "jpeg", "store must be one of resized, original, got 'jpeg'"),
    ],
)
def test_writer_rejects_a_store_and_image_size_that_disagree(
    tmp_path: Path, image_size: int | None, store: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ShardWriter(
            tmp_path / "ds", name="x", classes=CLASSES, image_size=image_size, seed=0,
            source="t", synthetic=True, params={}, store=store,
        )  # fmt: skip
    assert not list(tmp_path.iterdir())  # nothing staged


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((5, 5), np.uint8), r"image must be uint8 \(H, W, 3\), got uint8 \(5, 5\)"),
        (np.zeros((5, 5, 4), np.uint8), r"image must be uint8 \(H, W, 3\)"),
        (np.zeros((0, 5, 3), np.uint8), r"image must be uint8 \(H, W, 3\)"),
        (b"GIF89a not a png at all......", "not PNG bytes"),
    ],
)
def test_original_store_rejects_what_is_not_an_rgb_image_naming_the_sample(
    tmp_path: Path, image: object, message: str
) -> None:
    with ShardWriter(
        tmp_path / "ds", name="x", classes=CLASSES, image_size=None, seed=0, source="t",
        synthetic=True, params={}, store="original",
    ) as writer:  # fmt: skip
        with pytest.raises(ValueError, match=f"^patient-7: {message}"):
            writer.add("train", image, 0, "patient-7")


def test_png_header_check_refuses_grey_or_16_bit_png() -> None:
    grey = Image.new("L", (3, 2))
    from io import BytesIO

    buffer = BytesIO()
    grey.save(buffer, format="PNG")
    with pytest.raises(ValueError, match="PNG must be 8-bit RGB, got bit depth 8, colour type 0"):
        png_shape(buffer.getvalue(), "scan-1")
    assert png_shape(encode_png(np.zeros((2, 3, 3), np.uint8))) == (2, 3)


def test_decoding_ignores_pillows_bomb_limit_for_our_own_shards(monkeypatch) -> None:
    image = _image(0, (20, 30))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # 600 px is "2 × over" the limit
    assert np.array_equal(decode_png(encode_png(image)), image)


def test_original_shard_with_corrupt_png_names_the_file_and_image(tmp_path: Path) -> None:
    _pack_original(tmp_path / "ds")
    shard = tmp_path / "ds" / "val-00000.h5"
    with h5py.File(shard, "r+") as handle:
        data = handle["images"][1].copy()
        data[40:80] = 0  # inside the compressed pixel data
        handle["images"][1] = data
    reader = ShardReader(read_manifest(tmp_path / "ds", verify=False), "val")
    with pytest.raises(ShardError, match=f"{shard}: cannot read image 1 .* re-pack the dataset"):
        reader.image(1)
    reader.close()


def test_a_resized_manifest_over_original_shards_is_refused(tmp_path: Path) -> None:
    _pack_original(tmp_path / "ds")
    manifest = read_manifest(tmp_path / "ds")
    resized = type(manifest)(**{**manifest.__dict__, "store": "resized"})
    with pytest.raises(ShardError, match=r"holds \(4,\) images \(PNG bytes\) .* \(resized\)"):
        ShardReader(resized, "train")
