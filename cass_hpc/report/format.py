"""How the collector writes numbers, durations and row labels, and the paper's row order.

The paper (Tables 2-5) lists DINO, CASS, Supervised for the CNN, then the same three for the
Transformer; our own CASS+ (``cass_plus``, not in the paper) sits right after CASS. Columns are
label fractions 1 %, 10 %, 100 %; a cell is ``mean ± variance`` over five seeds (App. F.2.1).
Variances as small as 3.9e-05 appear there, so tiny values are written in scientific notation
rather than rounded to zero.
"""

from __future__ import annotations

import math

import pandas as pd

MISSING = "—"

# single digits: paper_order sorts on the text "<rank><method>"; 9 = a method not listed here
# (the paper's DINO, CASS, Supervised, with the field's other methods after DINO)
METHOD_ORDER = {"dino": 0, "simclr": 1, "vicreg": 2, "byol": 3, "mae": 4, "cass": 5,
                "cass_plus": 6, "supervised": 7}  # fmt: skip
METHOD_LABELS = {"dino": "DINO", "simclr": "SimCLR", "vicreg": "VICReg", "byol": "BYOL",
                 "mae": "MAE", "cass": "CASS", "cass_plus": "CASS+",
                 "supervised": "Supervised"}  # fmt: skip
# val_selected / ensemble: both arms together (issue 14 item 4, report.arms), after the two arms
ARM_ORDER = {"cnn": 0, "vit": 1, "val_selected": 2, "ensemble": 3}
ARM_LABELS = {"cnn": "CNN", "vit": "ViT", "val_selected": "val-selected arm",
              "ensemble": "ensemble"}  # fmt: skip
DERIVED_ARMS = ("val_selected", "ensemble")
ARM_HEADERS = {"cnn": "CNN", "vit": "Transformer"}  # the ablation tables' column words (App. C)


def format_fraction(label_fraction: float) -> str:
    """0.01 → ``1%``, 0.1 → ``10%``, 1.0 → ``100%``."""
    return f"{label_fraction * 100:.4g}%"


def format_value(value: float | None) -> str:
    """Four decimals; tiny non-zero values (a paper-style variance) in scientific notation."""
    if value is None or not math.isfinite(value):
        return MISSING
    if 1e-12 < abs(value) < 5e-5:  # below 1e-12 is float noise around an exact 0
        return f"{value:.1e}"
    return f"{value:.4f}"


def format_cell(mean: float | None, spread: float | None, n: int) -> str:
    """``0.8500 ± 0.0050 (n=2)``; a single seed shows ``0.8000 (n=1)``, no seed ``—``."""
    if n == 0 or mean is None or not math.isfinite(mean):
        return MISSING
    if n == 1 or spread is None or not math.isfinite(spread):
        return f"{format_value(mean)} (n={n})"
    return f"{format_value(mean)} ± {format_value(spread)} (n={n})"


def format_interval(low: float | None, high: float | None) -> str:
    """``[0.7865, 0.9135]``; ``""`` when unknown (a single replicate)."""
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return ""
    return f"[{format_value(low)}, {format_value(high)}]"


def format_delta(delta: float | None) -> str:
    """A signed difference, ``+0.0123`` / ``-0.0050``; ``—`` if unknown."""
    if delta is None or not math.isfinite(delta):
        return MISSING
    return f"{delta:+.4f}"


def format_duration(seconds: float | None) -> str:
    """``12.3 s``, ``1 min 05 s``, ``1 h 13 min`` (paper Table 1 style); ``—`` if unknown."""
    if seconds is None or not math.isfinite(seconds):
        return MISSING
    if seconds < 59.95:
        return f"{seconds:.1f} s"
    total = round(seconds)
    if total < 3600:
        return f"{total // 60} min {total % 60:02d} s"
    return f"{total // 3600} h {total % 3600 // 60:02d} min"


def method_label(method: str) -> str:
    """``cass`` → ``CASS``; an unknown method is title-cased."""
    return METHOD_LABELS.get(method, method.title())


def row_label(method: str, arm: str, backbone: str) -> str:
    """``CASS · CNN (resnet18)``; both arms together: ``CASS · ensemble`` (no backbone)."""
    if arm in DERIVED_ARMS:
        return f"{method_label(method)} · {ARM_LABELS[arm]}"
    return f"{method_label(method)} · {ARM_LABELS.get(arm, arm.upper())} ({backbone})"


def paper_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort rows into paper order: table, setting, arm (CNN, ViT), method (DINO, CASS,
    CASS+, Supervised), backbone, label fraction, metric — for whichever of those columns
    exist."""
    keys = {
        "arm": lambda s: s.map(lambda a: f"{ARM_ORDER.get(a, 9)}{a}"),
        "method": lambda s: s.map(lambda m: f"{METHOD_ORDER.get(m, 9)}{m}"),
    }
    columns = [
        column
        for column in ("experiment", "dataset", "setting", "arm", "method", "backbone",
                       "label_fraction", "metric")
        if column in frame
    ]  # fmt: skip
    return frame.sort_values(columns, key=lambda s: keys.get(s.name, lambda x: x)(s), kind="stable")


def slug(text: str) -> str:
    """A file-name-safe version of a dataset or experiment name."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text)).strip("._")
    return cleaned or "unnamed"
