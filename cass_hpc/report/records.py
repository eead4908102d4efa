"""Finding, parsing and deduplicating results.json records (schema ``cass-hpc-results/1``).

A grid writes one ``results.json`` per finished cell (``cass_hpc.cell``) and, beside it, the
cell's ``state.json`` with the command-line overrides that made it (``cass_hpc.jobstate``); the
overrides are how the collector knows which ablation value a cell ran with. A file that is not
valid JSON or not such a record is reported by path and skipped; a requeued or rerun cell (same
``key``) counts once, the newest ``created`` winning.

Issue 14 fields (additive; an old record without them still counts): ``val_metrics`` (the
validation metrics of the kept weights, to choose an arm), ``per_class`` (test metrics per
class), ``split_seed`` (null = the packed split; a replicate is (split_seed, seed)) and
``files.predictions`` (the cell's ``predictions.npz``, for the CNN + ViT ensemble). A malformed
optional field is ignored, never costing the cell its test metrics.

Example:
    >>> records = load_records(find_results([Path("runs/demo")]), warn=print)
    >>> frame, notes = deduplicate(settings.annotate(records_frame(records)))
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from numbers import Real
from pathlib import Path

import pandas as pd

from cass_hpc.report.format import format_fraction

SCHEMA = "cass-hpc-results/1"
STATE_FILE = "state.json"  # the cell's job state beside results.json (cass_hpc.jobstate)
REQUIRED_KEYS = (
    "schema", "key", "experiment", "dataset", "method", "arm", "backbone",
    "label_fraction", "seed", "metrics", "created",
)  # fmt: skip
METRIC_PREFIX = "metric."
VAL_PREFIX = "val."  # the validation metrics of the kept weights (results.json 'val_metrics')
REPLICATE_COLUMNS = ("split_seed", "seed")  # one replicate of a cell (issue 14 item 7)
PER_CLASS_FIELDS = ("support", "precision", "recall", "f1", "auroc")
TABLE_COLUMNS = ("experiment", "dataset")  # one results table per (experiment, dataset)
ROW_COLUMNS = ("method", "arm", "backbone")
CELL_COLUMNS = (*TABLE_COLUMNS, "setting", *ROW_COLUMNS, "label_fraction")
PRETRAIN_FIELDS = (
    "pretrain_key", "pretrain_method", "pretrain_wall_s", "pretrain_images_per_s",
    "pretrain_epochs", "pretrain_final_loss", "pretrain_final_spread_cnn",
    "pretrain_final_spread_vit", "pretrain_loss", "pretrain_spread", "pretrain_knn_epochs",
    "pretrain_knn", "pretrain_knn_chance", "pretrain_knn_final_cnn", "pretrain_knn_final_vit",
    "pretrain_knn_s", "pretrain_knn_start_cnn", "pretrain_knn_start_vit",
)  # fmt: skip


class RecordError(ValueError):
    """A results.json that cannot be used; the message says what is wrong in one line."""


class CollectError(Exception):
    """A problem with the input as a whole; the message is the one line shown to the user."""


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_finite(value: object) -> bool:
    """A number that is not NaN or ±Infinity (Python's json reads both from a results.json)."""
    return _is_number(value) and math.isfinite(float(value))  # type: ignore[arg-type]


def _text(raw: Mapping[str, object], name: str) -> str:
    value = raw[name]
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"{name!r} must be a non-empty string, got {value!r}")
    return value.strip()


def parse_record(raw: object) -> dict[str, object]:
    """Validate one decoded results.json and flatten it.

    Returns a flat dict: the identity fields, ``created`` as a UTC ``pd.Timestamp``, one
    ``metric.<name>`` entry per test metric, ``history`` (the fine-tuning epochs, for the
    plots), the ``pretrain_*`` fields (``None`` when the cell has no pretraining) and
    ``overrides`` (empty here; :func:`load_records` fills it from state.json).
    Raises :class:`RecordError` naming the first problem found.
    """
    if not isinstance(raw, dict):
        raise RecordError(f"top level is a JSON {type(raw).__name__}, expected an object")
    missing = [name for name in REQUIRED_KEYS if name not in raw]
    if missing:
        raise RecordError(f"missing required key(s): {', '.join(missing)}")
    if raw["schema"] != SCHEMA:
        raise RecordError(f"schema {raw['schema']!r} is not {SCHEMA!r}")
    record: dict[str, object] = {
        name: _text(raw, name) for name in ("key", *TABLE_COLUMNS, *ROW_COLUMNS)
    }
    record["method"] = str(record["method"]).lower()
    record["arm"] = str(record["arm"]).lower()
    fraction = raw["label_fraction"]
    if not _is_number(fraction) or not 0 < float(fraction) <= 1:
        raise RecordError(f"'label_fraction' must be a number in (0, 1], got {fraction!r}")
    record["label_fraction"] = round(float(fraction), 6)  # 0.1 and 0.1000000001 are one column
    if not isinstance(raw["seed"], int) or isinstance(raw["seed"], bool):
        raise RecordError(f"'seed' must be an integer, got {raw['seed']!r}")
    record["seed"] = raw["seed"]
    split_seed = raw.get("split_seed")
    if split_seed is not None and (not isinstance(split_seed, int) or isinstance(split_seed, bool)):
        raise RecordError(f"'split_seed' must be an integer or null, got {split_seed!r}")
    record["split_seed"] = split_seed
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
        if value is not None and not _is_finite(value):
            shown = json.dumps(value) if _is_number(value) else repr(value)  # NaN, Infinity
            raise RecordError(f"metric {name!r} must be a finite number or null, got {shown}")
        record[METRIC_PREFIX + name] = math.nan if value is None else float(value)
    val_metrics = raw.get("val_metrics") if isinstance(raw.get("val_metrics"), dict) else {}
    for name, value in val_metrics.items():
        record[VAL_PREFIX + str(name)] = float(value) if _is_finite(value) else math.nan
    record["per_class"] = parse_per_class(raw.get("per_class"))
    files = raw.get("files") if isinstance(raw.get("files"), dict) else {}
    predictions = files.get("predictions")
    record["predictions_file"] = predictions if isinstance(predictions, str) else None
    record["synthetic"] = bool(raw.get("synthetic", False))
    warnings = raw.get("warnings") or []
    record["collapsed"] = any("COLLAPSE" in str(w) for w in warnings)  # its net had collapsed
    finetune = raw.get("finetune") if isinstance(raw.get("finetune"), dict) else {}
    history = finetune.get("history")
    record["history"] = (
        [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []
    )
    record.update(_parse_pretrain(raw.get("pretrain"), str(record["method"])))
    # a cell without pretraining: the k-NN of the weights it fine-tuned from (its yardstick)
    own = raw.get("knn_start") if isinstance(raw.get("knn_start"), dict) else {}
    record["knn_start_own"] = _number_or_none(own.get(str(record["arm"])))
    record["overrides"] = {}
    return record


def parse_per_class(per_class: object) -> dict[str, list] | None:
    """The ``per_class`` block (names + one list per :data:`PER_CLASS_FIELDS`, null or
    non-finite entries as NaN); ``None`` when absent or malformed (lists of different lengths,
    a non-number)."""
    if not isinstance(per_class, dict) or not isinstance(per_class.get("names"), list):
        return None
    names = [str(name) for name in per_class["names"]]
    parsed: dict[str, list] = {"names": names}
    for name in PER_CLASS_FIELDS:
        values = per_class.get(name)
        if values is None and name == "auroc":
            values = [None] * len(names)
        if not isinstance(values, list) or len(values) != len(names):
            return None
        if not all(v is None or _is_number(v) for v in values):
            return None
        parsed[name] = [float(v) if _is_finite(v) else math.nan for v in values]  # NaN: no value
    return parsed


def _numbers(values: object) -> list[float]:
    """A per-epoch list of numbers (anything else in it dropped)."""
    return [float(v) for v in values if _is_number(v)] if isinstance(values, list) else []


def _last(values: object) -> float | None:
    numbers = _numbers(values)
    return numbers[-1] if numbers else None


def _number_or_none(value: object) -> float | None:
    return float(value) if _is_number(value) else None


def _parse_knn(pretrain: Mapping[str, object]) -> dict[str, object]:
    """The k-NN health monitor's fields (``cass_hpc.knn``); empty / ``None`` where a record
    predates the monitor, ran without it or holds something malformed (a diagnostic, like the
    spread: it never costs the cell its test metrics)."""
    epochs = pretrain.get("knn_epochs")
    if not isinstance(epochs, list) or not all(
        isinstance(e, int) and not isinstance(e, bool) for e in epochs
    ):
        epochs = []
    knn = pretrain.get("knn") if isinstance(pretrain.get("knn"), dict) else {}
    curves = {  # an arm's scores count only when they pair one to one with the epochs scored
        str(arm): [float(v) if _is_number(v) else math.nan for v in values]
        for arm, values in knn.items()
        if isinstance(values, list) and values and len(values) == len(epochs)
    }
    final = pretrain.get("knn_final") if isinstance(pretrain.get("knn_final"), dict) else {}
    knn_s = _number_or_none(pretrain.get("knn_s"))
    # epoch 0: the starting weights (none in a record made before the monitor scored them)
    start = {arm: v[0] for arm, v in curves.items() if epochs[0] == 0 and math.isfinite(v[0])}
    return {
        "pretrain_knn_epochs": epochs if curves else [],
        "pretrain_knn": curves,
        "pretrain_knn_chance": _number_or_none(pretrain.get("knn_chance")),
        # the score of the weights fine-tuning got (keep=best_knn: maybe an earlier epoch's)
        "pretrain_knn_final_cnn": _number_or_none(final.get("cnn")),
        "pretrain_knn_final_vit": _number_or_none(final.get("vit")),
        "pretrain_knn_s": None if knn_s is None or knn_s < 0 else knn_s,
        "pretrain_knn_start_cnn": start.get("cnn"),
        "pretrain_knn_start_vit": start.get("vit"),
    }


def _parse_pretrain(pretrain: object, method: str) -> dict[str, object]:
    """The pretraining fields of a record; all ``None`` for a cell without pretraining."""
    if pretrain is None:
        return dict.fromkeys(PRETRAIN_FIELDS)
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
    epochs = pretrain.get("epochs")
    return {
        "pretrain_key": key,
        "pretrain_method": str(pretrain_method).lower() if pretrain_method else method,
        "pretrain_wall_s": float(wall_s),
        "pretrain_images_per_s": None if images_per_s is None else float(images_per_s),
        "pretrain_epochs": epochs if isinstance(epochs, int) else None,
        # collapse diagnostics: the last epoch's loss and each net's output spread (0 = collapsed)
        "pretrain_final_loss": _last(pretrain.get("loss")),
        "pretrain_final_spread_cnn": _last(spread.get("cnn")),
        "pretrain_final_spread_vit": _last(spread.get("vit")),
        "pretrain_loss": _numbers(pretrain.get("loss")),  # per epoch, for the plots
        "pretrain_spread": {str(arm): _numbers(values) for arm, values in spread.items()},
        **_parse_knn(pretrain),
    }


def parse_overrides(overrides: object) -> dict[str, str]:
    """Hydra's task overrides (``["pretrain.batch_size=8", "+model.x=1"]``) as a dict.

    ``+``/``++`` prefixes are dropped (``+pretrain.arm_optimizers.cnn`` is the key
    ``pretrain.arm_optimizers.cnn``), ``~key`` deletions and malformed entries are ignored,
    surrounding quotes are removed from values.
    """
    parsed: dict[str, str] = {}
    if not isinstance(overrides, list):
        return parsed
    for item in overrides:
        if not isinstance(item, str) or "=" not in item or item.startswith("~"):
            continue
        key, value = item.split("=", 1)
        key = key.lstrip("+").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if key:
            parsed[key] = value
    return parsed


def read_overrides(results_path: Path) -> dict[str, str]:
    """The overrides recorded in the state.json beside ``results_path``; {} if none is readable."""
    try:
        state = json.loads((results_path.parent / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return parse_overrides(state.get("overrides")) if isinstance(state, dict) else {}


def find_results(rundirs: Sequence[Path]) -> list[Path]:
    """Every results.json under each of ``rundirs``, sorted, each file once.

    Raises :class:`CollectError` for a rundir that is missing or not a folder, or when no
    results.json exists under any of them.
    """
    paths: set[Path] = set()
    for rundir in rundirs:
        if not rundir.exists():
            raise CollectError(f"{rundir} does not exist; pass the folder your grid writes runs to")
        if not rundir.is_dir():
            raise CollectError(
                f"{rundir} is not a folder; pass the folder your grid writes runs to"
            )
        paths.update(p.resolve() for p in rundir.rglob("results.json"))
    if not paths:
        where = ", ".join(map(str, rundirs))
        raise CollectError(f"no results.json under {where}; has any grid cell finished yet?")
    return sorted(paths)


def load_records(paths: Iterable[Path], warn: Callable[[str], None]) -> list[dict[str, object]]:
    """Parse each results.json (+ its state.json overrides); one that cannot be used is reported
    through ``warn`` with its path and skipped."""
    records = []
    for path in paths:
        try:
            record = parse_record(json.loads(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as error:
            warn(f"{path}: not valid JSON ({error}); skipped")
            continue
        except (OSError, UnicodeDecodeError) as error:
            warn(f"{path}: cannot be read ({error}); skipped")
            continue
        except RecordError as error:
            warn(f"{path}: {error}; skipped")
            continue
        record["path"] = str(path)
        name = record.pop("predictions_file", None)
        record["predictions_path"] = str(path.parent / str(name)) if name else None
        record["overrides"] = read_overrides(path)
        records.append(record)
    return records


def records_frame(records: Iterable[Mapping[str, object]]) -> pd.DataFrame:
    """One row per parsed record (see :func:`parse_record`); extra keys such as ``path`` kept."""
    frame = pd.DataFrame(list(records))
    for column in ("key", *CELL_COLUMNS, "seed", "created", "pretrain_key", "pretrain_method",
                   "predictions_path"):  # fmt: skip
        if column not in frame:
            frame[column] = pd.Series(dtype=object)
    if "setting" in frame:
        frame["setting"] = frame["setting"].fillna("")
    for column in ("overrides", "history", "pretrain_loss", "pretrain_spread",
                   "pretrain_knn_epochs", "pretrain_knn", "per_class"):  # fmt: skip
        if column not in frame:
            frame[column] = pd.Series([None] * len(frame), dtype=object)
    for column in ("pretrain_wall_s", "pretrain_images_per_s", "pretrain_final_loss",
                   "pretrain_final_spread_cnn", "pretrain_final_spread_vit",
                   "pretrain_knn_chance", "pretrain_knn_final_cnn", "pretrain_knn_final_vit",
                   "pretrain_knn_s", "pretrain_knn_start_cnn",
                   "pretrain_knn_start_vit", "knn_start_own"):  # fmt: skip
        frame[column] = pd.to_numeric(frame.get(column), errors="coerce")
    split_seed = frame.get("split_seed", pd.Series(None, index=frame.index, dtype=object))
    frame["split_seed"] = pd.array(split_seed.tolist(), dtype="Int64")  # null: the packed split
    frame["collapsed"] = frame.get("collapsed", pd.Series(False, index=frame.index)).fillna(False)
    frame["synthetic"] = frame.get("synthetic", pd.Series(False, index=frame.index)).fillna(False)
    return frame


def metric_names(frame: pd.DataFrame) -> list[str]:
    """The test metrics present in a records frame (with a value in some record), sorted."""
    return sorted(
        c[len(METRIC_PREFIX) :]
        for c in frame.columns
        if c.startswith(METRIC_PREFIX) and frame[c].notna().any()
    )


def replicate_label(split_seed: object, seed: object) -> str:
    """``seed 1`` for the packed split, ``split 3 seed 1`` for a re-drawn one."""
    return f"seed {seed}" if pd.isna(split_seed) else f"split {split_seed} seed {seed}"


def deduplicate(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Count each grid cell once; return the kept rows and one note per thing dropped.

    A requeued or rerun cell writes the same ``key`` again (possibly in another run directory):
    the newest ``created`` wins. Two different keys for the same cell, setting and seed (the
    config changed in a way the overrides do not show) would count one seed twice, so the
    newest is kept and a note names both keys.
    """
    ordered = frame.sort_values(["created", *(["path"] if "path" in frame else [])], kind="stable")
    by_key = ordered.drop_duplicates(subset="key", keep="last")
    notes = []
    if dropped := len(ordered) - len(by_key):
        notes.append(f"{dropped} duplicate result(s) of an already seen key counted once (newest)")
    coordinates = [*CELL_COLUMNS, *REPLICATE_COLUMNS]
    for values, group in by_key.groupby(coordinates, sort=True, dropna=False):
        if len(group) > 1:
            cell = dict(zip(coordinates, values, strict=True))
            setting = f" [{cell['setting']}]" if cell["setting"] else ""
            notes.append(
                f"{cell['experiment']}/{cell['dataset']}{setting} {cell['method']}/{cell['arm']} "
                f"{format_fraction(cell['label_fraction'])} "
                f"{replicate_label(cell['split_seed'], cell['seed'])}: "
                f"{len(group)} results with different keys ({', '.join(group['key'])}); "
                f"kept the newest ({group['key'].iloc[-1]})"
            )
    kept = by_key.drop_duplicates(subset=coordinates, keep="last")
    return kept.sort_index().reset_index(drop=True), notes
