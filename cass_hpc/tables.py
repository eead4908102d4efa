"""Pure table building for the collector: results.json records in, the paper's tables out.

Everything here takes plain dicts or a pandas DataFrame and returns a DataFrame or a string, so the
tests can assert exact cells; file I/O, console output and the CLI live in :mod:`cass_hpc.collect`.

The layout follows the CASS paper (Singh & Cirrone): Tables 2-5 (rows DINO / CASS / Supervised for
the CNN, then the same three for the Transformer; columns the label fractions; mean ± spread over
seeds) and Table 1 (cumulative pretraining wall time, DINO CNN+ViT vs one CASS run).

Example:
    >>> frame = records_frame([parse_record(raw) for raw in raws])
    >>> frame, notes = deduplicate(frame)
    >>> summary = aggregate(frame)
    >>> results_table(summary, metric="macro_f1", spread="std")  # one (experiment, dataset)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from numbers import Real

import pandas as pd

SCHEMA = "cass-hpc-results/1"
REQUIRED_KEYS = (
    "schema", "key", "experiment", "dataset", "method", "arm", "backbone",
    "label_fraction", "seed", "metrics", "created",
)  # fmt: skip
METRIC_PREFIX = "metric."
TABLE_COLUMNS = ("experiment", "dataset")  # one results table per (experiment, dataset)
ROW_COLUMNS = ("method", "arm", "backbone")
CELL_COLUMNS = (*TABLE_COLUMNS, *ROW_COLUMNS, "label_fraction")
SUMMARY_COLUMNS = (*CELL_COLUMNS, "metric", "mean", "std", "var", "n")
PRETRAIN_COLUMNS = (
    "experiment", "dataset", "method", "seeds", "runs_per_seed_min", "runs_per_seed_max",
    "wall_s_mean", "wall_s_std", "images_per_s_mean", "final_loss_mean",
    "final_spread_cnn_mean", "final_spread_vit_mean",
)  # fmt: skip
SPREADS = ("std", "var")
MISSING = "—"

# Paper order (Table 2): DINO, CASS, Supervised within each backbone; CNN rows before ViT rows.
METHOD_ORDER = {"dino": 0, "cass": 1, "supervised": 2}
METHOD_LABELS = {"dino": "DINO", "cass": "CASS", "supervised": "Supervised"}
ARM_ORDER = {"cnn": 0, "vit": 1}
ARM_LABELS = {"cnn": "CNN", "vit": "ViT"}


class RecordError(ValueError):
    """A results.json that cannot be used; the message says what is wrong in one line."""


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _text(raw: Mapping[str, object], name: str) -> str:
    value = raw[name]
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"{name!r} must be a non-empty string, got {value!r}")
    return value.strip()


def parse_record(raw: object) -> dict[str, object]:
    """Validate one decoded results.json (schema ``cass-hpc-results/1``) and flatten it.

    Returns a flat dict: the identity fields, ``created`` as a UTC ``pd.Timestamp``, one
    ``metric.<name>`` entry per test metric, and ``pretrain_key`` / ``pretrain_method`` /
    ``pretrain_wall_s`` / ``pretrain_images_per_s`` (``None`` when the cell has no pretraining).
    Raises :class:`RecordError` naming the first problem found.
    """
    if not isinstance(raw, dict):
        raise RecordError(f"top level is a JSON {type(raw).__name__}, expected an object")
    missing = [name for name in REQUIRED_KEYS if name not in raw]
    if missing:
        raise RecordError(f"missing required key(s): {', '.join(missing)}")
    if raw["schema"] != SCHEMA:
        raise RecordError(f"schema {raw['schema']!r} is not {SCHEMA!r}")
    record: dict[str, object] = {name: _text(raw, name) for name in ("key", *CELL_COLUMNS[:-1])}
    record["method"] = str(record["method"]).lower()
    record["arm"] = str(record["arm"]).lower()
    fraction = raw["label_fraction"]
    if not _is_number(fraction) or not 0 < float(fraction) <= 1:
        raise RecordError(f"'label_fraction' must be a number in (0, 1], got {fraction!r}")
    record["label_fraction"] = round(float(fraction), 6)  # 0.1 and 0.1000000001 are one column
    if not isinstance(raw["seed"], int) or isinstance(raw["seed"], bool):
        raise RecordError(f"'seed' must be an integer, got {raw['seed']!r}")
    record["seed"] = raw["seed"]
    try:
        created = pd.Timestamp(raw["created"])
    except (TypeError, ValueError):
        created = pd.NaT
    if not isinstance(raw["created"], str) or pd.isna(created):
        raise RecordError(f"'created' must be an ISO-8601 time, got {raw['created']!r}")
    record["created"] = (
        created.tz_localize("UTC") if created.tzinfo is None else created.tz_convert("UTC")
    )
    metrics = raw["metrics"]
    if not isinstance(metrics, dict):
        raise RecordError(f"'metrics' must be an object, got {type(metrics).__name__}")
    for name, value in metrics.items():
        if value is not None and not _is_number(value):
            raise RecordError(f"metric {name!r} must be a number or null, got {value!r}")
        record[METRIC_PREFIX + name] = math.nan if value is None else float(value)
    record["synthetic"] = bool(raw.get("synthetic", False))
    warnings = raw.get("warnings") or []
    record["collapsed"] = any("COLLAPSE" in str(w) for w in warnings)  # its net had collapsed
    record.update(_parse_pretrain(raw.get("pretrain"), str(record["method"])))
    return record


def _last(values: object) -> float | None:
    """The final entry of a per-epoch list of numbers, if there is one."""
    if isinstance(values, list) and values and _is_number(values[-1]):
        return float(values[-1])
    return None


def _parse_pretrain(pretrain: object, method: str) -> dict[str, object]:
    """The pretraining fields of a record; all ``None`` for a cell without pretraining."""
    if pretrain is None:
        return dict.fromkeys(
            (
                "pretrain_key", "pretrain_method", "pretrain_wall_s", "pretrain_images_per_s",
                "pretrain_final_loss", "pretrain_final_spread_cnn", "pretrain_final_spread_vit",
            )
        )  # fmt: skip
    if not isinstance(pretrain, dict):
        raise RecordError(f"'pretrain' must be an object or null, got {type(pretrain).__name__}")
    key, wall_s = pretrain.get("key"), pretrain.get("wall_s")
    if not isinstance(key, str) or not key:
        raise RecordError(f"'pretrain.key' must be a non-empty string, got {key!r}")
    if not _is_number(wall_s) or float(wall_s) < 0:
        raise RecordError(f"'pretrain.wall_s' must be a number >= 0, got {wall_s!r}")
    images_per_s = pretrain.get("images_per_s")
    if images_per_s is not None and not _is_number(images_per_s):
        raise RecordError(f"'pretrain.images_per_s' must be a number, got {images_per_s!r}")
    pretrain_method = pretrain.get("method")
    spread = pretrain.get("spread") if isinstance(pretrain.get("spread"), dict) else {}
    return {
        # collapse diagnostics: the last epoch's loss and each net's output spread (0 = collapsed)
        "pretrain_final_loss": _last(pretrain.get("loss")),
        "pretrain_final_spread_cnn": _last(spread.get("cnn")),
        "pretrain_final_spread_vit": _last(spread.get("vit")),
        "pretrain_key": key,
        "pretrain_method": str(pretrain_method).lower() if pretrain_method else method,
        "pretrain_wall_s": float(wall_s),
        "pretrain_images_per_s": None if images_per_s is None else float(images_per_s),
    }


def records_frame(records: Iterable[Mapping[str, object]]) -> pd.DataFrame:
    """One row per parsed record (see :func:`parse_record`); extra keys such as ``path`` kept."""
    frame = pd.DataFrame(list(records))
    for column in ("key", *CELL_COLUMNS, "seed", "created", "pretrain_key", "pretrain_method"):
        if column not in frame:
            frame[column] = pd.Series(dtype=object)
    for column in ("pretrain_wall_s", "pretrain_images_per_s"):
        frame[column] = pd.to_numeric(frame.get(column), errors="coerce")
    return frame


def metric_names(frame: pd.DataFrame) -> list[str]:
    """The test metrics present in a records frame, sorted."""
    return sorted(c[len(METRIC_PREFIX) :] for c in frame.columns if c.startswith(METRIC_PREFIX))


def deduplicate(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Count each grid cell once; return the kept rows and one note per thing dropped.

    A requeued or rerun cell writes the same ``key`` again: the newest ``created`` wins. Two
    different keys for the same cell and seed (the config changed but the schema cannot say how)
    would count one seed twice, so the newest is kept and a note names both keys.
    """
    ordered = frame.sort_values(["created", *(["path"] if "path" in frame else [])], kind="stable")
    by_key = ordered.drop_duplicates(subset="key", keep="last")
    notes = []
    if dropped := len(ordered) - len(by_key):
        notes.append(f"{dropped} duplicate result(s) of an already seen key counted once (newest)")
    coordinates = [*CELL_COLUMNS, "seed"]
    for values, group in by_key.groupby(coordinates, sort=True):
        if len(group) > 1:
            cell = dict(zip(coordinates, values, strict=True))
            notes.append(
                f"{cell['experiment']}/{cell['dataset']} {cell['method']}/{cell['arm']} "
                f"{format_fraction(cell['label_fraction'])} seed {cell['seed']}: "
                f"{len(group)} results with different keys ({', '.join(group['key'])}); "
                f"kept the newest ({group['key'].iloc[-1]})"
            )
    kept = by_key.drop_duplicates(subset=coordinates, keep="last")
    return kept.sort_index().reset_index(drop=True), notes


def _order(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort rows into paper order: arm (CNN, ViT), method (DINO, CASS, Supervised), fraction."""
    keys = {
        "arm": lambda s: s.map(lambda a: f"{ARM_ORDER.get(a, 9)}{a}"),
        "method": lambda s: s.map(lambda m: f"{METHOD_ORDER.get(m, 9)}{m}"),
    }
    columns = [c for c in (*TABLE_COLUMNS, "arm", "method", "backbone", "label_fraction", "metric")
               if c in frame]  # fmt: skip
    return frame.sort_values(columns, key=lambda s: keys.get(s.name, lambda x: x)(s), kind="stable")


def aggregate(frame: pd.DataFrame, metrics: Iterable[str] | None = None) -> pd.DataFrame:
    """Long-form summary over seeds: one row per cell and metric with mean, std, var (ddof 1), n.

    ``std`` and ``var`` are NaN when only one seed is present; a seed whose metric is null is not
    counted in ``n``.
    """
    parts = []
    for metric in metric_names(frame) if metrics is None else metrics:
        column = METRIC_PREFIX + metric
        if column not in frame:
            continue
        values = frame.dropna(subset=[column]).groupby(list(CELL_COLUMNS))[column]
        stats = values.agg(mean="mean", std="std", var="var", n="count").reset_index()
        stats.insert(len(CELL_COLUMNS), "metric", metric)
        parts.append(stats)
    if not parts:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    summary = pd.concat(parts, ignore_index=True)
    return _order(summary).reset_index(drop=True)[list(SUMMARY_COLUMNS)]


def format_fraction(label_fraction: float) -> str:
    """0.01 → ``1%``, 0.1 → ``10%``, 1.0 → ``100%``."""
    return f"{label_fraction * 100:.4g}%"


def format_value(value: float) -> str:
    """Four decimals; tiny non-zero values (a paper-style variance) in scientific notation."""
    if value is None or not math.isfinite(value):
        return MISSING
    if 1e-12 < abs(value) < 5e-5:  # below 1e-12 is float noise around an exact 0
        return f"{value:.1e}"
    return f"{value:.4f}"


def format_cell(mean: float, spread: float, n: int) -> str:
    """``0.8500 ± 0.0707 (n=2)``; a single seed shows ``0.8000 (n=1)``, no seed ``—``."""
    if n == 0 or mean is None or not math.isfinite(mean):
        return MISSING
    if n == 1 or spread is None or not math.isfinite(spread):
        return f"{format_value(mean)} (n={n})"
    return f"{format_value(mean)} ± {format_value(spread)} (n={n})"


def row_label(method: str, arm: str, backbone: str) -> str:
    """``CASS · CNN (resnet18)``."""
    method_label = METHOD_LABELS.get(method, method.title())
    return f"{method_label} · {ARM_LABELS.get(arm, arm.upper())} ({backbone})"


def _single_table(frame: pd.DataFrame) -> None:
    tables = frame[list(TABLE_COLUMNS)].drop_duplicates()
    if len(tables) > 1:
        names = ", ".join("/".join(map(str, row)) for row in tables.itertuples(index=False))
        raise ValueError(f"expected the rows of one (experiment, dataset), got {names}")


def results_table(summary: pd.DataFrame, metric: str, spread: str = "std") -> pd.DataFrame:
    """The paper's results table for ONE (experiment, dataset) of an :func:`aggregate` summary.

    Rows are every (method, arm, backbone) seen, labelled by :func:`row_label`, in paper order;
    columns every label fraction seen, ascending (``10%``, ``100%``); cells ``mean ± spread (n=k)``
    of ``metric``, ``—`` where that row has no result at that fraction.
    """
    if spread not in SPREADS:
        raise ValueError(f"spread must be one of {', '.join(SPREADS)}, got {spread!r}")
    _single_table(summary)
    ordered = _order(summary)
    rows = list(dict.fromkeys(ordered[list(ROW_COLUMNS)].itertuples(index=False, name=None)))
    fractions = sorted(ordered["label_fraction"].unique())
    table = pd.DataFrame(
        MISSING,
        index=pd.Index([row_label(*row) for row in rows], name="Method · Arm (backbone)"),
        columns=[format_fraction(f) for f in fractions],
        dtype=object,
    )
    for cell in ordered[ordered["metric"] == metric].itertuples(index=False):
        label = row_label(cell.method, cell.arm, cell.backbone)
        value = format_cell(cell.mean, getattr(cell, spread), int(cell.n))
        table.loc[label, format_fraction(cell.label_fraction)] = value
    return table


def coverage(frame: pd.DataFrame) -> tuple[int, int]:
    """(cells present, cells expected) for one table's records.

    Expected = |methods| · |arms| · |fractions| · |seeds| seen, so a grid cell that never wrote
    results.json shows up as the difference.
    """
    axes = ["method", "arm", "label_fraction", "seed"]
    present = len(frame[axes].drop_duplicates())
    expected = math.prod(frame[axis].nunique() for axis in axes)
    return present, expected


def _pretrain_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct pretraining run (``pretrain.key``) per (experiment, dataset, seed)."""
    runs = frame.dropna(subset=["pretrain_key"]).sort_values("created", kind="stable")
    subset = [*TABLE_COLUMNS, "pretrain_method", "seed", "pretrain_key"]
    runs = runs.drop_duplicates(subset=subset, keep="last")
    return runs.drop(columns="method").rename(columns={"pretrain_method": "method"})


def pretrain_per_seed(frame: pd.DataFrame) -> pd.DataFrame:
    """Cumulative pretraining wall time per (experiment, dataset, method, seed).

    Sums ``pretrain.wall_s`` over the DISTINCT ``pretrain.key`` values of that seed's cells: CASS's
    one run shared by both arms and all fractions counts once; DINO's one run per arm counts both
    (paper Table 1, "DINO CNN+ViT vs CASS"). Columns: ..., seed, wall_s, runs.
    """
    runs = _pretrain_runs(frame)
    grouped = runs.groupby([*TABLE_COLUMNS, "method", "seed"], sort=True)
    per_seed = grouped.agg(wall_s=("pretrain_wall_s", "sum"), runs=("pretrain_key", "nunique"))
    return per_seed.reset_index()


def pretrain_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (experiment, dataset, method): seeds, runs per seed, wall_s mean/std, images/s mean."""
    per_seed = pretrain_per_seed(frame)
    if per_seed.empty:
        return pd.DataFrame(columns=list(PRETRAIN_COLUMNS))
    keys = [*TABLE_COLUMNS, "method"]
    summary = per_seed.groupby(keys).agg(
        seeds=("seed", "nunique"),
        runs_per_seed_min=("runs", "min"),
        runs_per_seed_max=("runs", "max"),
        wall_s_mean=("wall_s", "mean"),
        wall_s_std=("wall_s", "std"),
    )
    runs = _pretrain_runs(frame).groupby(keys)
    summary["images_per_s_mean"] = runs["pretrain_images_per_s"].mean()
    summary["final_loss_mean"] = runs["pretrain_final_loss"].mean()
    summary["final_spread_cnn_mean"] = runs["pretrain_final_spread_cnn"].mean()
    summary["final_spread_vit_mean"] = runs["pretrain_final_spread_vit"].mean()
    return _order(summary.reset_index()).reset_index(drop=True)[list(PRETRAIN_COLUMNS)]


def format_duration(seconds: float) -> str:
    """``12.3 s``, ``1 min 05 s``, ``1 h 13 min`` (paper Table 1 style); ``—`` if unknown."""
    if seconds is None or not math.isfinite(seconds):
        return MISSING
    if seconds < 59.95:
        return f"{seconds:.1f} s"
    total = round(seconds)
    if total < 3600:
        return f"{total // 60} min {total % 60:02d} s"
    return f"{total // 3600} h {total % 3600 // 60:02d} min"


def _number(value: object) -> str:
    return MISSING if value is None or pd.isna(value) else f"{float(value):.4g}"


def pretrain_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Formatted pretraining-time table of ONE (experiment, dataset) of :func:`pretrain_summary`."""
    _single_table(summary)
    rows = {}
    for item in summary.itertuples(index=False):
        low, high = int(item.runs_per_seed_min), int(item.runs_per_seed_max)
        spread = "" if item.seeds < 2 else f" ± {format_duration(item.wall_s_std)}"
        seconds = "" if item.seeds < 2 else f" ± {item.wall_s_std:.1f}"
        speed = item.images_per_s_mean
        rows[METHOD_LABELS.get(item.method, item.method.title())] = {
            "Pretraining time (mean ± std)": format_duration(item.wall_s_mean) + spread,
            "Seconds": f"{item.wall_s_mean:.1f}{seconds}",
            "Runs per seed": str(low) if low == high else f"{low}–{high}",
            "Images/s": MISSING if pd.isna(speed) else f"{speed:.1f}",
            "Seeds": f"n={item.seeds}",
            "Final loss": _number(item.final_loss_mean),
            "Final spread CNN / ViT": (
                f"{_number(item.final_spread_cnn_mean)} / {_number(item.final_spread_vit_mean)}"
            ),
        }
    table = pd.DataFrame.from_dict(rows, orient="index", dtype=object)
    table.index.name = "Method"
    return table


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table of a formatted table (index as the first column)."""

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|")

    header = [cell(table.index.name or ""), *map(cell, table.columns)]
    lines = [
        "| " + " | ".join(header) + " |",
        "| :--- | " + " | ".join("---:" for _ in table.columns) + " |",
    ]
    for label, row in table.iterrows():
        lines.append("| " + " | ".join([cell(label), *map(cell, row)]) + " |")
    return "\n".join(lines) + "\n"
