"""The decoding policy (preprocess.readers.decode / dicom): every file becomes upright 8-bit RGB."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from raw_fixtures import (
    copy_dicom,
    dicom_file,
    exif_rotated_jpeg,
    jpeg_bytes,
    write_image,
    write_tiff,
)

from preprocess.pack import prepare_image
from preprocess.readers import ImageDecodeError, open_image
from preprocess.readers.common import loader


def _rgb(path: Path, **options) -> np.ndarray:
    image = open_image(path, **options)
    assert image.mode == "RGB"
    return np.asarray(image)


def _stretch(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.round((values.astype(np.float64) - low) * 255.0 / (high - low)).astype(np.uint8)


def test_pillow_modes_become_8bit_rgb_with_alpha_dropped(tmp_path: Path) -> None:
    grey = _rgb(write_image(tmp_path / "grey", "L", (7, 5), 77))
    assert grey.shape == (5, 7, 3) and np.all(grey == 77)
    rgba = _rgb(write_image(tmp_path / "rgba", "RGBA", (4, 4), 10))
    assert rgba[0, 0].tolist() == [10, 20, 200]  # alpha 90 dropped, never composited
    palette = _rgb(write_image(tmp_path / "pal", "P", (3, 3), 5))
    assert palette.shape == (3, 3, 3)
    deep = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)).save(deep)
    assert _rgb(deep)[..., 0].tolist() == [[0, 64], [128, 255]]  # own range → 0..255
    assert np.all(_rgb(deep)[..., 0] == _rgb(deep)[..., 2])


def test_exif_orientation_is_applied_once_through_pack(tmp_path: Path) -> None:
    upright = _rgb(exif_rotated_jpeg(tmp_path / "rotated.jpg"))
    assert upright.shape == (8, 4, 3)  # stored 8 wide × 4 high, shown 4 wide × 8 high
    assert upright[:3].max() < 60 and upright[-3:].min() > 200  # white half at the bottom
    packed = prepare_image(open_image(tmp_path / "rotated.jpg"), 8)
    assert packed[:3].mean() < 60 and packed[-3:].mean() > 200  # pack does not rotate it again


def test_16bit_multipage_tiff_page_and_channels(tmp_path: Path) -> None:
    written = write_tiff(tmp_path / "stack.tif", channels=3, pages=3, size=(6, 10))
    page = written[1]  # values 2000 + 100·c + x: stretched jointly over the three channels
    assert np.array_equal(_rgb(tmp_path / "stack.tif", page=1), _stretch(page, 2000, 2209))
    grey = _rgb(tmp_path / "stack.tif", page=2, channels=(2,))
    assert np.array_equal(grey[..., 0], _stretch(written[2][..., 2], 3200, 3209))
    assert np.array_equal(grey[..., 0], grey[..., 1])
    swapped = _rgb(tmp_path / "stack.tif", channels=(2, 1, 0))
    assert np.array_equal(swapped, _rgb(tmp_path / "stack.tif")[..., ::-1])


def test_4_channel_tiff_keeps_the_first_3_unless_channels_choose(tmp_path: Path) -> None:
    written = write_tiff(tmp_path / "four.tif", channels=4, size=(5, 8), compression="lzw")
    first3 = written[0][..., :3]
    assert np.array_equal(_rgb(tmp_path / "four.tif"), _stretch(first3, 1000, 1207))
    last3 = written[0][..., 1:]
    chosen = _rgb(tmp_path / "four.tif", channels=(1, 2, 3))
    assert np.array_equal(chosen, _stretch(last3, 1100, 1307))


def test_8bit_tiff_values_are_kept(tmp_path: Path) -> None:
    written = write_tiff(tmp_path / "grey8.tif", dtype=np.uint8, pages=2, size=(4, 6))
    assert np.array_equal(_rgb(tmp_path / "grey8.tif", page=1)[..., 1], written[1])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"page": 3}, r"stack\.tif: has 3 page\(s\), so --page 3 does not exist; choose 0\.\.2"),
        ({"channels": (0, 1, 5)}, r"stack\.tif: has 3 channel\(s\) \(0\.\.2\), so --channels"),
    ],
)
def test_missing_page_or_channel_names_the_file(tmp_path: Path, options, message) -> None:
    write_tiff(tmp_path / "stack.tif", channels=3, pages=3)
    with pytest.raises(ImageDecodeError, match=message):
        open_image(tmp_path / "stack.tif", **options)


def test_decompression_bomb_guard_refuses_from_the_header(tmp_path: Path) -> None:
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    assert open_image(tmp_path / "big.png", max_pixels=10_000).size == (100, 100)
    with pytest.raises(ImageDecodeError, match=r"big\.png: 100×100 = 10,000 pixels is over "
                       r"--max-pixels 9,999 \(decompression-bomb guard\)"):  # fmt: skip
        open_image(tmp_path / "big.png", max_pixels=9_999)
    write_tiff(tmp_path / "big.tif", size=(100, 100))
    with pytest.raises(ImageDecodeError, match=r"big\.tif: 100×100"):
        open_image(tmp_path / "big.tif", max_pixels=9_999)
    with pytest.raises(ImageDecodeError, match=r"RG1_UNCI\.dcm: 1841×1955"):
        open_image(dicom_file("chest_xray"), max_pixels=3_000_000)


def test_pillow_global_bomb_limit_is_lifted_when_max_pixels_allows(tmp_path: Path) -> None:
    Image.new("L", (300, 200)).save(tmp_path / "wide.png")
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 1000  # Pillow alone would refuse 60,000 pixels
    try:
        assert open_image(tmp_path / "wide.png", max_pixels=60_000).size == (300, 200)
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    assert Image.MAX_IMAGE_PIXELS == saved


def test_truncated_and_non_image_files_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "cut.jpg").write_bytes(jpeg_bytes()[:300])
    with pytest.raises(ImageDecodeError, match=r"cut\.jpg: cannot decode image \(OSError"):
        open_image(tmp_path / "cut.jpg")
    (tmp_path / "notes.png").write_text("not an image\nat all")
    with pytest.raises(ImageDecodeError, match=r"notes\.png: cannot decode image") as info:
        open_image(tmp_path / "notes.png")
    assert "\n" not in str(info.value)


def test_loaders_pickle_for_worker_processes(tmp_path: Path) -> None:
    write_tiff(tmp_path / "stack.tif", channels=3, pages=2)
    load = loader(tmp_path / "stack.tif", max_pixels=500, page=1, channels=(2, 1, 0))
    again = pickle.loads(pickle.dumps(load))
    assert np.array_equal(np.asarray(again()), np.asarray(load()))


def _synthetic_dicom(path: Path, raw: np.ndarray, photometric: str) -> Path:
    """A tiny 12-bit CT-like DICOM: slope 2, intercept -1000, window centre 0 width 400."""
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    dataset.set_pixel_data(raw, photometric_interpretation=photometric, bits_stored=12)
    dataset.RescaleSlope, dataset.RescaleIntercept = 2, -1000
    dataset.WindowCenter, dataset.WindowWidth = 0, 400
    dataset.save_as(path, enforce_file_format=True)
    return path


def test_dicom_rescale_and_window_map_the_window_to_0_255(tmp_path: Path) -> None:
    raw = np.array([[400, 450, 500, 550, 600, 1000]], dtype=np.uint16)  # → -200 … 1000 HU
    grey = _rgb(_synthetic_dicom(tmp_path / "w.dcm", raw, "MONOCHROME2"))[0, :, 0]
    # DICOM linear window (c - 0.5, w - 1): -200 and below → 0, above 199 → 255
    assert grey.tolist() == [0, 64, 128, 192, 255, 255]
    inverted = _rgb(_synthetic_dicom(tmp_path / "m1.dcm", raw, "MONOCHROME1"))[0, :, 0]
    assert inverted.tolist() == [255, 191, 127, 63, 0, 0]


def test_real_chest_xray_monochrome1_is_inverted(tmp_path: Path) -> None:
    chest = copy_dicom("chest_xray", tmp_path / "chest.dcm")
    shown = _rgb(chest)
    assert shown.shape == (1955, 1841, 3)
    dataset = pydicom.dcmread(chest)
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.save_as(tmp_path / "as_m2.dcm")
    as_monochrome2 = _rgb(tmp_path / "as_m2.dcm").astype(np.int32)
    assert np.all(shown.astype(np.int32) + as_monochrome2 == 255)


def test_real_ct_is_windowed_in_hounsfield_units() -> None:
    path = dicom_file("ct")
    dataset = pydicom.dcmread(path)
    hounsfield = dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
    grey = _rgb(path)[..., 0]
    centre, width = float(dataset.WindowCenter), float(dataset.WindowWidth)  # 40, 100
    below = hounsfield <= centre - 0.5 - (width - 1) / 2
    above = hounsfield > centre - 0.5 + (width - 1) / 2
    assert below.any() and above.any()
    assert np.all(grey[below] == 0) and np.all(grey[above] == 255)
    linear = np.clip((hounsfield - (centre - 0.5)) / (width - 1) + 0.5, 0, 1) * 255  # PS3.3 C.11.2
    assert np.abs(grey - linear).max() <= 0.5 + 1e-6


def test_real_mr_ultrasound_and_multiframe_dicom() -> None:
    mr = _rgb(dicom_file("mr"))
    assert mr.shape == (1024, 1024, 3) and mr.min() == 0 and mr.max() == 255
    ultrasound = dicom_file("ultrasound")
    assert np.array_equal(_rgb(ultrasound), pydicom.dcmread(ultrasound).pixel_array)  # kept
    frames = pydicom.dcmread(dicom_file("mr_multiframe")).pixel_array
    frame3 = _rgb(dicom_file("mr_multiframe"), page=3)[..., 0]
    assert np.array_equal(frame3, _stretch(frames[3], frames[3].min(), frames[3].max()))
    with pytest.raises(ImageDecodeError, match=r"has 10 frame\(s\), so --page 10 does not exist"):
        open_image(dicom_file("mr_multiframe"), page=10)


def test_tiff_orientation_miniswhite_and_palette_are_applied(tmp_path: Path) -> None:
    stored = np.zeros((2, 4), np.uint8)
    stored[:, 2:] = 255  # right half white
    tifffile.imwrite(tmp_path / "rotated.tif", stored, extratags=[(274, "H", 1, 6, True)])
    upright = _rgb(tmp_path / "rotated.tif")[..., 0]  # turned 90° clockwise: white at the bottom
    assert upright.tolist() == [[0, 0], [0, 0], [255, 255], [255, 255]]
    tifffile.imwrite(tmp_path / "white0.tif", stored, photometric="miniswhite")
    assert _rgb(tmp_path / "white0.tif")[0, :, 0].tolist() == [255, 255, 0, 0]
    colormap = np.zeros((3, 256), np.uint16)
    colormap[0, 1] = colormap[1, 2] = colormap[2, 3] = 65535
    indices = np.arange(4, dtype=np.uint8).reshape(2, 2)
    tifffile.imwrite(tmp_path / "pal.tif", indices, photometric="palette", colormap=colormap)
    expected = [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]
    assert _rgb(tmp_path / "pal.tif").reshape(4, 3).tolist() == expected
