"""The decoding policy: every raw image file becomes an 8-bit RGB PIL image, the same way.

Every reader loads its images through ``open_image``, so one policy holds for all datasets:

1. **Format** by content (falling back to the name): DICOM (``DICM`` magic, or ``.dcm``/``.dicom``)
   through pydicom (``preprocess.readers.dicom``: modality LUT, VOI window, MONOCHROME1
   inverted); TIFF through tifffile (any bit depth, any number of channels, multi-page); anything
   else through Pillow.
2. **Decompression-bomb guard**: an image (one page/frame) of more than ``max_pixels`` pixels is
   refused from its header, before it is decoded (``--max-pixels``; default 178,956,970, the size
   at which Pillow itself raises ``DecompressionBombError``).
3. **Orientation**: EXIF orientation applied (``PIL.ImageOps.exif_transpose``); for TIFF the
   Orientation tag is applied the same way.
4. **Page**: ``page`` picks the page of a multi-page TIFF, the frame of a multi-frame DICOM or of
   an animated image (default 0, the first).
5. **Channels**: ``channels`` picks 1 (grey) or 3 (RGB) channels by index; without it 1 channel is
   grey, 2 are grey + alpha, 3 are RGB and 4 or more keep the first 3 (alpha, or a fourth stain,
   is dropped). Alpha is dropped, never composited.
6. **Depth**: 8-bit data are kept as they are. Anything else (16-bit, 32-bit, float) is scaled
   linearly from the image's own min..max — over all kept channels together, so colours keep their
   balance — to 0..255 and rounded; a constant image becomes 0. DICOM with a VOI window scales the
   window's output range instead (see ``dicom``), so a window means the same grey in every image.
7. **Grey → RGB** by repeating the channel.

Decoding errors of every kind become ``ImageDecodeError`` with one line naming the file. Pillow's
own global bomb limit is lifted while ``open_image`` opens a file (it checks ``max_pixels``
itself), which is safe because packing decodes in processes, not threads.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's DecompressionBombError level: 2 × MAX_IMAGE_PIXELS
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
# TIFF/EXIF orientation → the transposition that makes the image upright (as exif_transpose)
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Pillow modes that numpy reads as they are; the others are converted to RGB first
_ARRAY_MODES = frozenset({"L", "LA", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


class ImageDecodeError(ValueError):
    """A raw image file cannot be opened or decoded."""


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


def open_image(
    path: str | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    page: int = 0,
    channels: Sequence[int] | None = None,
) -> Image.Image:
    """Decode ``path`` into an upright 8-bit RGB image by the policy above.

    ``ImageDecodeError`` names the file when it cannot be decoded, is over ``max_pixels``, or has
    no page ``page`` / channel in ``channels``. Readers bind the options with ``functools.partial``
    (picklable, so packing can decode in worker processes).
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # per-file decoder chatter would break 1-line errors
            rgb = _decode(path, max_pixels=max_pixels, page=page, channels=channels)
    except ImageDecodeError as err:
        raise ImageDecodeError(f"{path}: {err}") from err
    except Exception as err:  # decoders raise anything (OSError, KeyError, TiffFileError, ...)
        raise ImageDecodeError(
            f"{path}: cannot decode image ({type(err).__name__}: {one_line(err)})"
        ) from err
    return Image.fromarray(rgb)


def _decode(
    path: Path, *, max_pixels: int, page: int, channels: Sequence[int] | None
) -> np.ndarray:
    kind = _kind(path)
    if kind == "dicom":
        from preprocess.readers.dicom import read_dicom  # pydicom only when needed

        array, value_range, invert = read_dicom(path, max_pixels=max_pixels, frame=page)
        return to_rgb8(array, channels=channels, value_range=value_range, invert=invert)
    if kind == "tiff":
        array, invert = _read_tiff(path, max_pixels=max_pixels, page=page)
        return to_rgb8(array, channels=channels, invert=invert)
    return to_rgb8(_read_pillow(path, max_pixels=max_pixels, page=page), channels=channels)


def _kind(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(132)
    if head[128:132] == b"DICM" or path.suffix.lower() in DICOM_SUFFIXES:
        return "dicom"
    if head[:4] in _TIFF_MAGIC:
        return "tiff"
    return "pillow"


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """ImageDecodeError if a ``width`` × ``height`` image is over the bomb guard's limit."""
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"{width}×{height} = {width * height:,} pixels is over --max-pixels "
            f"{max_pixels:,} (decompression-bomb guard); raise --max-pixels if the image is genuine"
        )


def check_page(page: int, count: int, what: str) -> None:
    """ImageDecodeError if ``page`` is not one of ``count`` pages/frames."""
    if not 0 <= page < count:
        raise ImageDecodeError(
            f"has {count} {what}(s), so --page {page} does not exist; choose 0..{count - 1}"
        )


@contextlib.contextmanager
def _pillow_limit_lifted() -> Iterator[None]:
    """Let Pillow open any size: ``check_pixels`` applies the configured limit instead."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _read_pillow(path: Path, *, max_pixels: int, page: int) -> np.ndarray:
    """Any format Pillow reads (PNG, JPEG, BMP, GIF, WebP, ...): upright, as an array."""
    with _pillow_limit_lifted(), Image.open(path) as image:
        check_pixels(*image.size, max_pixels)
        check_page(page, getattr(image, "n_frames", 1), "frame")
        if page:
            image.seek(page)
        image.load()  # Pillow opens lazily: decode here so a truncated file fails now
        upright = ImageOps.exif_transpose(image) or image
        if upright.mode not in _ARRAY_MODES:  # 1, P, PA, CMYK, YCbCr, LAB, HSV, ...
            upright = upright.convert("RGBA" if "A" in upright.getbands() else "RGB")
        return np.asarray(upright)


def _read_tiff(path: Path, *, max_pixels: int, page: int) -> tuple[np.ndarray, bool]:
    """One page of a TIFF (tifffile: 8/16/32-bit, float, any channels); (array, invert)."""
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        check_page(page, len(tiff.pages), "page")
        tiff_page = tiff.pages[page]
        check_pixels(int(tiff_page.imagewidth), int(tiff_page.imagelength), max_pixels)
        array = tiff_page.asarray()
        axes = tiff_page.axes
        photometric = int(tiff_page.photometric)
        orientation = int(tiff_page.tags.valueof(274, 1) or 1)
        colormap = tiff_page.colormap
    if "S" in axes:  # samples last: planar (SYX) and contiguous (YXS) alike
        array = np.moveaxis(array, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
    array = np.squeeze(
        array, axis=tuple(i for i, a in enumerate(axes) if a not in "YXS" and array.shape[i] == 1)
    )
    if array.ndim not in (2, 3):
        raise ImageDecodeError(f"TIFF page {page} has axes {axes!r}; expected a 2-D image")
    if photometric == 3 and colormap is not None and array.ndim == 2:  # palette colour
        array = np.moveaxis(colormap[:, array], 0, -1)
        array = np.round(array / (257.0 if colormap.max() > 255 else 1.0)).astype(np.uint8)
    if orientation in _ORIENTATION:
        array = _transpose(array, _ORIENTATION[orientation])
    return array, photometric == 0  # MINISWHITE: 0 is white


def _transpose(array: np.ndarray, method: Image.Transpose) -> np.ndarray:
    """``Image.transpose`` for an (H, W[, C]) array of any dtype."""
    if method in (Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM):
        return np.flip(array, axis=1 if method == Image.Transpose.FLIP_LEFT_RIGHT else 0)
    if method == Image.Transpose.ROTATE_180:
        return array[::-1, ::-1]
    if method in (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270):
        return np.rot90(array, k=1 if method == Image.Transpose.ROTATE_90 else 3, axes=(0, 1))
    swapped = np.swapaxes(array, 0, 1)  # TRANSPOSE; TRANSVERSE is it rotated by 180°
    return swapped if method == Image.Transpose.TRANSPOSE else swapped[::-1, ::-1]


def to_rgb8(
    array: np.ndarray,
    *,
    channels: Sequence[int] | None = None,
    value_range: tuple[float, float] | None = None,
    invert: bool = False,
) -> np.ndarray:
    """An (H, W) or (H, W, C) array → (H, W, 3) uint8 by steps 5–7 of the policy.

    ``value_range`` (low, high) replaces the image's own min..max for non-8-bit data; ``invert``
    turns the result into its negative (MONOCHROME1 DICOM, MINISWHITE TIFF).
    """
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] == 0:
        raise ImageDecodeError(f"unsupported image array of shape {array.shape}")
    count = array.shape[-1]
    if channels is not None:
        missing = [c for c in channels if not 0 <= c < count]
        if missing:
            raise ImageDecodeError(
                f"has {count} channel(s) (0..{count - 1}), so --channels "
                f"{','.join(map(str, channels))} does not fit; choose channels that exist"
            )
        array = array[..., list(channels)]
    elif count == 2:  # grey + alpha
        array = array[..., :1]
    elif count > 3:  # RGBA (alpha dropped) or more stains than RGB holds: keep the first 3
        array = array[..., :3]
    array = _to_uint8(array, value_range)
    if invert:
        array = 255 - array
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    elif array.shape[-1] != 3:
        raise ImageDecodeError(f"{array.shape[-1]} channels selected; select 1 (grey) or 3 (RGB)")
    return np.ascontiguousarray(array)


def _to_uint8(array: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    """8-bit kept; bool → 0/255; anything else stretched linearly from its range to 0..255."""
    if array.dtype == np.uint8 and value_range is None:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    values = array.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(array.shape, dtype=np.uint8)
    if not finite.all():  # NaN / inf in float data count as the darkest value
        values = np.where(finite, values, values[finite].min())
    low, high = value_range if value_range is not None else (values.min(), values.max())
    if high <= low:
        return np.zeros(array.shape, dtype=np.uint8)
    scaled = (np.clip(values, low, high) - low) * 255.0 / (high - low)
    return np.round(scaled).astype(np.uint8)
