"""Reader for the brain-tumour MRI dataset (Kaggle, Nickparvar; paper §4.3: 7,022 images).

Expected layout (as downloaded from Kaggle and unzipped):

    SRC/Training/<class>/<image>.jpg     5,712 images: glioma, meningioma, notumor, pituitary
    SRC/Testing/<class>/<image>.jpg      1,310 images

The curator's split is kept: Testing is the test split; validation is carved from Training
(1/8 of it, stratified and seeded by --seed, ≈ 10 % of all images), the rest is train — as the
paper followed the curator's train/test split. Classes are the class folder names (sorted); they
must be the same under Training and Testing. Images are grey or RGB JPEGs of varying size
(219×234 … 512×512); any format the folder reader takes is accepted, DICOM included. Non-image
files are an error unless --skip-bad records and skips them; an empty class folder is an error.
This is the folder reader with the Training/Testing layout required.
"""

from __future__ import annotations

import argparse

from preprocess.readers import ReaderResult, ReaderSpec
from preprocess.readers.common import add_skip_bad, decode_options
from preprocess.readers.folder import TRAINING_TESTING, read_folder


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", metavar="SRC", help="folder holding Training/ and Testing/")
    add_skip_bad(parser)


def _read(args: argparse.Namespace) -> ReaderResult:
    return read_folder(
        args.src,
        seed=args.seed,
        skip_bad=args.skip_bad,
        layout=TRAINING_TESTING,
        **decode_options(args),
    )


READER = ReaderSpec(
    name="brain_mri",
    help="brain-tumour MRI (Kaggle): SRC/Training/<class>/*.jpg + SRC/Testing/<class>/*.jpg",
    description=__doc__ or "",
    add_arguments=_add_arguments,
    read=_read,
)
