"""Raw image files and dataset trees as they lie on disk, made in a temporary folder for the reader
tests: generated images of mixed sizes and modes (L, RGB, RGBA, P, 16-bit PNG, EXIF-rotated
JPEG, 8/16-bit TIFF with 1/3/4 channels and several pages) and real DICOM files from the
``pydicom-data`` package (installed offline with the test dependencies; never downloaded)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from preprocess.__main__ import main

# Real DICOM files shipped by pydicom-data, all in an uncompressed transfer syntax (Explicit VR
# Little Endian), so pydicom decodes them without any plugin.
DICOM_FIXTURES = {
    "chest_xray": "RG1_UNCI.dcm",  # CR chest PA, MONOCHROME1, 15-bit, window 15000/30000
    "ct": "693_UNCI.dcm",  # CT, signed, rescale 1/-1024 (HU), window 40/100
    "mr": "MR2_UNCI.dcm",  # MR shoulder, 12-bit, rescale, window 1000/2000
    "ultrasound": "US1_UNCI.dcm",  # US, RGB 8-bit
    "mr_multiframe": "emri_small.dcm",  # MR, 10 frames of 64×64
}
MIXED_KINDS = ("L", "RGB", "RGBA", "P", "I;16", "exif")


def dicom_file(kind: str) -> Path:
    """The path of a pydicom-data DICOM fixture (see DICOM_FIXTURES)."""
    from pydicom.data import get_testdata_file

    found = get_testdata_file(DICOM_FIXTURES[kind], download=False)
    assert found is not None, "pydicom-data is not installed: pip install pydicom-data"
    return Path(found)


def copy_dicom(kind: str, path: Path) -> Path:
    """Copy a DICOM fixture to ``path`` (parents created); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(dicom_file(kind), path)
    return path


def exif_rotated_jpeg(path: Path, size: tuple[int, int] = (8, 4)) -> Path:
    """A JPEG stored landscape (left half black, right half white) with EXIF orientation 6, so
    it is upright when turned 90° clockwise: portrait, white half at the bottom."""
    stored = Image.new("RGB", size, (0, 0, 0))
    stored.paste((255, 255, 255), (size[0] // 2, 0, *size))
    exif = Image.Exif()
    exif[0x0112] = 6
    path.parent.mkdir(parents=True, exist_ok=True)
    stored.save(path, "JPEG", exif=exif, quality=95)
    return path


def write_image(path: Path, kind: str, size: tuple[int, int], value: int = 100) -> Path:
    """A small real image of ``kind`` (one of MIXED_KINDS) at ``path`` with a suitable suffix
    (replacing path's own); returns the path written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    value = int(value) % 256
    if kind == "exif":
        return exif_rotated_jpeg(path.with_suffix(".jpg"), size)
    if kind == "I;16":
        array = np.full(size[::-1], value * 200, dtype=np.uint16)
        array[0, 0] = 0  # a range to stretch
        Image.fromarray(array).save(path := path.with_suffix(".png"))
        return path
    fill = {
        "L": value,
        "RGB": (value, 255 - value, 40),
        "RGBA": (value, 20, 200, 90),
        "P": value,
    }[kind]
    suffix = ".jpg" if kind == "RGB" else ".png"
    Image.new(kind, size, fill).save(path := path.with_suffix(suffix))
    return path


def mixed_image(stem: Path, index: int) -> Path:
    """Image number ``index`` of a tree: the kind cycles through MIXED_KINDS, the size varies."""
    kind = MIXED_KINDS[index % len(MIXED_KINDS)]
    return write_image(stem, kind, (18 + 5 * index, 14 + 3 * (index % 4)), 30 * index)


def write_tiff(
    path: Path,
    *,
    dtype: type = np.uint16,
    channels: int = 1,
    pages: int = 1,
    size: tuple[int, int] = (12, 10),
    compression: str | None = None,
) -> np.ndarray:
    """A (multi-page) TIFF whose page p, channel c holds ``(p + 1) * base + c * step + x`` (x:
    the column; base, step = 1000, 100 for 16-bit and 50, 20 for 8-bit); returns the
    (pages, H, W[, C]) array written."""
    height, width = size
    base, step = (50, 20) if np.dtype(dtype).itemsize == 1 else (1000, 100)
    x = np.arange(width, dtype=np.int64)[None, :]
    planes = [
        [np.broadcast_to((p + 1) * base + c * step + x, (height, width)) for c in range(channels)]
        for p in range(pages)
    ]
    array = np.asarray(planes, dtype=np.int64)  # (pages, channels, H, W)
    array = np.moveaxis(array, 1, -1) if channels > 1 else array[:, 0]
    array = np.clip(array, 0, np.iinfo(dtype).max).astype(dtype)
    photometric = "minisblack" if channels in (1, 2) else "rgb"
    extra = ["unassalpha"] if channels == 4 else None
    path.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path) as tiff:
        for page in array:
            tiff.write(page, photometric=photometric, extrasamples=extra, compression=compression)
    return array


def jpeg_bytes(size: tuple[int, int] = (40, 30)) -> bytes:
    """A small valid JPEG, for truncating."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 60, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


def cli_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """Run ``python -m preprocess ARGV`` in-process; assert it fails with exit status 2 and one
    ``error:`` line and no traceback, and return that line."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.strip()


def pack_cli(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """Run ``python -m preprocess ARGV`` in-process; assert success and return stdout."""
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


# ---------------------------------------------------------------- dataset trees in real layouts

ISIC_CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
ISIC_HEADER = "image," + ",".join(ISIC_CLASSES) + ",UNK"
DERMOFIT_CLASSES = ("AK", "BCC", "ML", "SCC", "SK", "IEC", "PYO", "VASC", "DF", "MEL")
BRAIN_CLASSES = ("glioma", "meningioma", "notumor", "pituitary")


def jpeg_image(path: Path, index: int) -> Path:
    """A JPEG of mixed mode (grey, RGB, CMYK, EXIF-rotated RGB) and size, as ISIC holds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = ("L", "RGB", "CMYK", "exif")[index % 4]
    size = (24 + 6 * (index % 5), 18 + 4 * (index % 3))
    if kind == "exif":
        return exif_rotated_jpeg(path, size)
    fill = {"L": 40 + index, "RGB": (index * 9 % 256, 80, 160), "CMYK": (10, 60, index, 0)}[kind]
    Image.new(kind, size, fill).save(path, "JPEG")
    return path


def isic_line(image_id: str, *positive: str, unk: str = "0.0") -> str:
    """One ground-truth line: one-hot floats for ``positive``, then UNK."""
    return ",".join([image_id, *("1.0" if c in positive else "0.0" for c in ISIC_CLASSES), unk])


def isic_tree(root: Path, per_class: int = 3) -> list[str]:
    """The official ISIC-2019 training layout with ``per_class`` JPEGs per class, LICENSE and
    ATTRIBUTION files in the image folder and a metadata CSV; returns the image ids in order."""
    images = root / "ISIC_2019_Training_Input"
    lines, ids = [ISIC_HEADER], []
    for cls in ISIC_CLASSES:
        for _ in range(per_class):
            n = len(ids)
            image_id = f"ISIC_{n:07d}" + ("_downsampled" if n % 7 == 6 else "")
            jpeg_image(images / f"{image_id}.jpg", n)
            lines.append(isic_line(image_id, cls))
            ids.append(image_id)
    (root / "ISIC_2019_Training_GroundTruth.csv").write_text("\n".join(lines) + "\n")
    (images / "LICENSE.txt").write_text("CC-BY-NC\n")
    (images / "ATTRIBUTION.txt").write_text("ISIC archive\n")
    (root / "ISIC_2019_Training_Metadata.csv").write_text(
        "image,age_approx,anatom_site_general,lesion_id,sex\n"
        + "".join(f"{i},55.0,anterior torso,,male\n" for i in ids)
    )
    return ids


def dermofit_tree(root: Path, per_class: int = 3) -> list[str]:
    """SRC/<CLASS>/<id>/<id>.<ext> with a mask <id>mask.png beside each image (mixed modes and
    sizes); returns the lesion ids."""
    ids = []
    for cls in DERMOFIT_CLASSES:
        for _ in range(per_class):
            lesion = f"{cls[0]}{len(ids):03d}"
            folder = root / cls / lesion
            mixed_image(folder / lesion, len(ids))
            mask = Image.new("L", (10, 10), 0)
            mask.paste(255, (3, 3, 7, 7))
            mask.save(folder / f"{lesion}mask.png")
            ids.append(lesion)
    (root / "README.txt").write_text("Dermofit Image Library\n")
    return ids


def brain_mri_tree(root: Path, training: int = 4, testing: int = 2) -> None:
    """Kaggle's Training/<class>/ and Testing/<class>/ with mixed images; the glioma class holds
    a real MR DICOM and a 16-bit TIFF among them."""
    n = 0
    for part, count in (("Training", training), ("Testing", testing)):
        for cls in BRAIN_CLASSES:
            for i in range(count):
                stem = root / part / cls / f"{part[:2]}-{cls[:2]}_{i:04d}"
                if cls == "glioma" and part == "Training" and i == 0:
                    copy_dicom("mr", stem.with_suffix(".dcm"))
                elif cls == "glioma" and part == "Training" and i == 1:
                    write_tiff(stem.with_suffix(".tif"), pages=2)
                else:
                    mixed_image(stem, n)
                n += 1


def autoimmune_labels(index: int) -> list[int]:
    """A multi-label set over 5 classes: every class present in several images."""
    labels = {index % 5}
    if index % 3 == 0:
        labels.add((index + 2) % 5)
    return sorted(labels)


def autoimmune_tree(root: Path, count: int = 15) -> Path:
    """labels.csv (file,label with "[i, j]") + 2-page TIFFs, 8/16-bit, 1/3/4 channels, in
    per-patient folders; returns the CSV path."""
    lines = ["file,label"]
    for i in range(count):
        name = f"patient{i % 3}/slide_{i:03d}.tif"
        dtype = np.uint16 if i % 2 == 0 else np.uint8
        write_tiff(root / name, dtype=dtype, channels=(1, 3, 4)[i % 3], pages=2, size=(20, 24))
        labels = ", ".join(map(str, autoimmune_labels(i)))
        lines.append(f'{name},"[{labels}]"')
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root / "labels.csv"
