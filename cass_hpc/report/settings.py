"""Which configuration a cell ran with, beyond its grid coordinates: the swept ablation keys.

A cell's results.json says what it is (method, arm, backbone, fraction, seed) but not which
ablation value made it; the Hydra overrides recorded in its state.json do
(``pretrain.batch_size=8``). Within one (experiment, dataset), an override key whose value
differs between cells of one method is *swept*: it is part of the cell's identity (its
``setting``, e.g. ``pretrain.batch_size=8``) and the tables show one row per value, in the layout
of the paper's App. C/D. A key that differs only between methods (a method's own configuration,
e.g. DINO's ``method.params.out_dim`` set in a grid of DINO's own) is not swept: it is named per
method in ``fixed_settings``. Keys that only say where or how a job ran (paths, threads,
launcher) never count.

Example:
    >>> frame = annotate(records_frame(records))
    >>> frame[["setting", "fixed_settings"]]
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

GRID_AXES = ("method", "arm", "label_fraction", "seed", "split_seed")  # every table's own axes
INFRA_KEYS = frozenset(
    {"runs_dir", "experiment", "experiment_name", "dataset", "dataset.path", "dataset.name",
     "dataset.verify", "threads", "device", "verify_shards", "keep_weights"}
)  # fmt: skip
INFRA_PREFIXES = ("hydra", "slurm", "speed.")  # speed.*: how fast, not what
INFRA_SUFFIXES = ("num_workers",)
DEFAULT = "(default)"  # the value shown for a cell whose overrides do not set a swept key


@dataclass(frozen=True)
class Ablation:
    """A known ablation key: how the paper names it, where it is, and the paper's value."""

    label: str  # the paper's first column header
    where: str  # the paper's section and tables
    paper_value: str | None  # the setting of the main results (Tables 2-5); None: not in the paper
    order: tuple[str, ...] = ()  # row order of non-numeric values (paper order)


ABLATIONS: dict[str, Ablation] = {
    "pretrain.batch_size": Ablation("Batch size", "App. C.1 / D.1, Tables 6 and 14", "16"),
    "pretrain.epochs": Ablation("Pretraining epochs", "App. C.2 / D.2, Tables 7 and 15", "100"),
    "method.params.augment": Ablation(
        "Augmentation set",
        "App. C.3, Table 8",
        "paper",
        ("paper", "solarize", "blur", "solarize_blur"),
    ),  # fmt: skip
    "pretrain.arm_optimizers.cnn": Ablation(
        "Optimiser for CNN", "App. C.4, Table 9", "adam", ("adam", "sgd", "adamw")
    ),
    "pretrain.optimizer": Ablation("Optimiser", "App. C.4", "adam", ("adam", "sgd", "adamw")),
    "init": Ablation(
        "Initialisation",
        "App. D.4, Table 20",
        "imagenet",
        ("random", "imagenet", "local"),
    ),
    "method.params.head_activation": Ablation(
        "Activation before the loss", "App. D.5, Table 21", "none", ("none", "sigmoid", "softmax")
    ),
    "pretrain.swa": Ablation("SWA", "ours (the paper always uses SWA)", "true", ("true", "false")),
    "model": Ablation(
        "Backbone pair",
        "App. C.5 / D.3, Tables 10, 12, 16-19",
        "paper_pair",
        (
            "paper_pair",
            "r18_vitb16",
            "r200_vitb16",
            "r50_vitl16",
            "r50_deitb16",
            "r50_densenet161",
            "swin_vitb16",
        ),
    ),  # fmt: skip
    "method.params.anti_collapse": Ablation(
        "Anti-collapse (ours)", "ours, beyond the paper", "none", ("none", "center", "variance")
    ),
    "finetune.mode": Ablation("Fine-tuning", "ours (linear probe)", "e2e", ("e2e", "linear")),
}


def is_identity_key(key: str) -> bool:
    """Whether an override key can change a result (not a grid axis, path, thread count, …)."""
    return (
        key not in GRID_AXES
        and key not in INFRA_KEYS
        and not key.startswith(INFRA_PREFIXES)
        and not key.endswith(INFRA_SUFFIXES)
    )


def format_setting(values: dict[str, str]) -> str:
    """``{"pretrain.batch_size": "8"}`` → ``pretrain.batch_size=8`` (keys sorted, ``, ``-joined)."""
    return ", ".join(f"{key}={value}" for key, value in sorted(values.items()))


def parse_setting(setting: str) -> dict[str, str]:
    """The inverse of :func:`format_setting`."""
    if not setting:
        return {}
    return dict(part.split("=", 1) for part in setting.split(", "))


def annotate(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``setting`` (the swept keys' values of each cell, ``""`` if none) and
    ``fixed_settings`` (the identity overrides shared by every cell of its table, for titles)
    per (experiment, dataset)."""
    frame = frame.copy()
    frame["setting"] = ""
    frame["fixed_settings"] = ""
    if frame.empty:
        return frame
    overrides = frame["overrides"].map(lambda o: o if isinstance(o, dict) else {})
    for _, part in frame.groupby(["experiment", "dataset"], sort=False):
        cells = overrides.loc[part.index]
        methods = part["method"] if "method" in part else pd.Series("", index=part.index)
        keys = sorted({k for o in cells for k in o if is_identity_key(k)})
        swept = [k for k in keys if _varies_within_a_method(cells, methods, k)]
        fixed = {k: str(cells.iloc[0][k]) for k in keys if _one_value(cells, k)}
        per_method = [
            f"{method}: {format_setting(values)}"
            for method, values in _method_settings(cells, methods, keys, swept, fixed).items()
        ]
        frame.loc[part.index, "setting"] = [
            format_setting({k: o.get(k, DEFAULT) for k in swept}) for o in cells
        ]
        frame.loc[part.index, "fixed_settings"] = "; ".join(
            [text for text in [format_setting(fixed)] if text] + per_method
        )
    return frame


def _one_value(cells: pd.Series, key: str) -> bool:
    return len({o.get(key, DEFAULT) for o in cells}) == 1


def _varies_within_a_method(cells: pd.Series, methods: pd.Series, key: str) -> bool:
    """Swept: two cells of one method differ in ``key``. A key that differs only between
    methods (DINO's ``method.params.out_dim`` in a grid of its own) configures its method."""
    return any(
        len({o.get(key, DEFAULT) for o in cells[methods == method]}) > 1
        for method in methods.unique()
    )


def _method_settings(
    cells: pd.Series, methods: pd.Series, keys: list[str], swept: list[str], fixed: dict
) -> dict[str, dict[str, str]]:
    """Per method, the keys that configure it alone (set on its cells, not on every cell)."""
    own = [k for k in keys if k not in swept and k not in fixed]
    settings = {}
    for method in sorted(methods.unique()):
        mine = cells[methods == method]
        values = {k: str(mine.iloc[0][k]) for k in own if k in mine.iloc[0]}
        if values:
            settings[str(method)] = values
    return settings


def swept_keys(settings: pd.Series) -> list[str]:
    """The keys named in a table's ``setting`` column, sorted."""
    return sorted({key for s in settings.dropna() for key in parse_setting(str(s))})


def off_paper(setting: str, fixed_settings: str) -> list[str]:
    """The known ablation keys of a cell set to something else than the paper's main value
    (such a cell is not comparable with the paper's Tables 2-5)."""
    values = {**parse_setting(fixed_settings), **parse_setting(setting)}
    return [
        f"{key}={value}"
        for key, value in sorted(values.items())
        if key in ABLATIONS and ABLATIONS[key].paper_value not in (None, value)
    ]


def value_order(key: str, values: list[str]) -> list[str]:
    """Values of a swept key in table order: numeric ascending, else the paper's order, else
    alphabetical; ``(default)`` last."""

    def number(value: str) -> float | None:
        try:
            return float(value)
        except ValueError:
            return None

    present = [v for v in dict.fromkeys(values) if v != DEFAULT]
    if present and all(number(v) is not None for v in present):
        ordered = sorted(present, key=lambda v: number(v) or 0.0)
    else:
        known = ABLATIONS[key].order if key in ABLATIONS else ()
        ordered = sorted(present, key=lambda v: (known.index(v) if v in known else len(known), v))
    return ordered + ([DEFAULT] if DEFAULT in values else [])
