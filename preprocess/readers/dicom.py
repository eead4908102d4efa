"""DICOM frames as a viewer shows them (pydicom), for ``decode.open_image``.

For the chosen frame of a DICOM file:

- **greyscale** (MONOCHROME1 / MONOCHROME2: X-ray, CT, MR): the modality transform first
  (Rescale Slope / Intercept, or a Modality LUT Sequence: CT values become Hounsfield units), then
  the first VOI transform (Window Center / Width, or a VOI LUT Sequence), both with
  ``pydicom.pixels.apply_modality_lut`` / ``apply_voi_lut``. With a VOI transform the window's
  output range maps linearly to 0..255 (values outside the window clip to 0 or 255), so a window
  shows the same grey in every image; without one, the frame's own min..max does. MONOCHROME1
  (0 = white, usual for CR/DX chest radiographs) is inverted last, so bright always means dense.
- **PALETTE COLOR** (some ultrasound): the palette is applied (``apply_color_lut``); 16-bit palette
  entries are scaled by 255/65535.
- **RGB / YBR_*** (ultrasound, photographs): pydicom returns RGB; 8-bit is kept, deeper data are
  stretched like any other image.

Uncompressed transfer syntaxes (implicit/explicit VR, little/big endian) and RLE Lossless decode
with pydicom alone; JPEG / JPEG-LS / JPEG 2000 need a pydicom decoding plugin (Pillow, pylibjpeg
or GDCM) and otherwise fail with a message naming the file and its transfer syntax.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from preprocess.readers.decode import ImageDecodeError, check_page, check_pixels


def read_dicom(
    path: Path, *, max_pixels: int, frame: int = 0
) -> tuple[np.ndarray, tuple[float, float] | None, bool]:
    """Frame ``frame`` of ``path`` as (array, value range for 0..255 or None, invert)."""
    import pydicom
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array

    # force=True also reads old files without the 128-byte preamble when they are named .dcm
    dataset = pydicom.dcmread(path, force=True)
    if "TransferSyntaxUID" not in dataset.file_meta:  # no meta header: say how it was read
        implicit, little = dataset.original_encoding
        dataset.file_meta.TransferSyntaxUID = (
            pydicom.uid.ImplicitVRLittleEndian
            if implicit
            else pydicom.uid.ExplicitVRLittleEndian
            if little
            else pydicom.uid.ExplicitVRBigEndian
        )
    if "PixelData" not in dataset and "FloatPixelData" not in dataset:
        raise ImageDecodeError("DICOM file holds no image (no Pixel Data element)")
    check_pixels(int(dataset.Columns), int(dataset.Rows), max_pixels)
    frames = int(dataset.get("NumberOfFrames") or 1)
    check_page(frame, frames, "frame")
    try:
        array = pixel_array(dataset, index=frame if frames > 1 else None)
    except (NotImplementedError, RuntimeError) as err:
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax) or "unknown"
        raise ImageDecodeError(
            f"pydicom cannot decode its pixel data (transfer syntax {name}: "
            f"{' '.join(str(err).split())}); install a decoder (pip install pylibjpeg "
            f"pylibjpeg-openjpeg) or convert it to an uncompressed transfer syntax"
        ) from err
    photometric = str(dataset.get("PhotometricInterpretation", "")).strip().upper()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(array, dataset)
        return rgb, (0.0, 65535.0 if rgb.max() > 255 else 255.0), False
    if not photometric.startswith("MONOCHROME"):
        return array, None, False  # RGB (YBR already converted by pydicom)
    values = apply_modality_lut(array, dataset)
    bits = int(dataset.get("BitsStored") or 0)
    value_range = (0.0, float(2**bits - 1)) if values.dtype == np.uint8 and 0 < bits < 8 else None
    if ("WindowCenter" in dataset and "WindowWidth" in dataset) or "VOILUTSequence" in dataset:
        value_range = _voi_output_range(values, dataset)
        values = apply_voi_lut(values, dataset, index=0)
    return values, value_range, photometric == "MONOCHROME1"


def _voi_output_range(values: np.ndarray, dataset: object) -> tuple[float, float]:
    """The VOI transform's outputs for inputs below and above its window."""
    from pydicom.pixels import apply_voi_lut

    if "VOILUTSequence" in dataset and np.issubdtype(values.dtype, np.integer):
        info = np.iinfo(values.dtype)  # a LUT (preferred by apply_voi_lut) clips to its ends
        extremes = np.asarray([info.min, info.max], dtype=values.dtype)
    elif "VOILUTSequence" in dataset:
        extremes = np.asarray([values.min(), values.max()], dtype=values.dtype)
    else:  # windowing computes in floating point and clips to its output range
        extremes = np.asarray([-1e30, 1e30], dtype=np.float64)
    low, high = sorted(float(v) for v in apply_voi_lut(extremes, dataset, index=0))
    return low, high
