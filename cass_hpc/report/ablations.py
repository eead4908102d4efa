"""Ablation tables in the layout of the paper's App. C/D (Tables 6-21).

The paper's ablations read: first column the swept value ("Batch Size": 8, 16, 32), then "CNN
F1 Score" and "Transformer F1 Score" (at 100 % labels). Our grids (``conf/experiment/
ablation_*.yaml``) sweep one key over label fractions 10 % and 100 %, so the columns are arm ×
fraction: ``CNN 10%``, ``Transformer 10%``, ``CNN 100%``, ``Transformer 100%``. The swept key and
each cell's value come from :mod:`.settings` (the cell's recorded overrides).

Example:
    >>> ablation_table(rows, spread="var", title="autoimmune: batch size").cells
"""

from __future__ import annotations

import pandas as pd

from cass_hpc.report.format import (
    ARM_HEADERS,
    ARM_ORDER,
    DERIVED_ARMS,
    METHOD_ORDER,
    MISSING,
    format_cell,
    format_fraction,
    format_interval,
    method_label,
)
from cass_hpc.report.settings import ABLATIONS, parse_setting, swept_keys, value_order
from cass_hpc.report.tables import SPREADS, Table


def ablation_title(keys: list[str]) -> str:
    """``Batch size (pretrain.batch_size; paper App. C.1 / D.1, Tables 6 and 14)``."""
    parts = []
    for key in keys:
        known = ABLATIONS.get(key)
        parts.append(f"{known.label} ({key}; paper {known.where})" if known else key)
    return " × ".join(parts)


def _header(key: str | None, arm: str, fraction: float) -> str:
    if key == "model":  # the slots hold other nets in the CNN+CNN and Transformer+Transformer pairs
        arm_word = {"cnn": "Arm 1 (cnn slot)", "vit": "Arm 2 (vit slot)"}.get(arm, arm)
    else:
        arm_word = ARM_HEADERS.get(arm, arm.upper())
    return f"{arm_word} {format_fraction(fraction)}"


def ablation_table(rows: pd.DataFrame, spread: str = "var", title: str = "") -> Table:
    """One ablation table from the summary rows of ONE (experiment, dataset) and one metric.

    Rows: each swept value (paper order, the paper's own value marked ``(paper)``), per method
    when several methods ran; for the backbone-pair key the row names both backbones. Columns:
    arm × fraction. Cells ``mean ± spread (n=k)``, the 95 % t-interval as their second line;
    best of each column marked. The rows of both arms together (val-selected arm, ensemble;
    :mod:`.arms`) are left out here to keep the paper's layout; results.csv has them.
    """
    if spread not in SPREADS:
        raise ValueError(f"spread must be one of {', '.join(SPREADS)}, got {spread!r}")
    rows = rows[~rows["arm"].isin(DERIVED_ARMS)]
    keys = swept_keys(rows["setting"])
    key = keys[0] if len(keys) == 1 else None
    several_methods = rows["method"].nunique() > 1

    def value_of(setting: str) -> str:
        values = parse_setting(setting)
        return values.get(key, "") if key else setting

    def label(setting: str, method: str) -> str:
        text = value_of(setting)
        known = ABLATIONS.get(key or "")
        if known and text == known.paper_value:
            text += " (paper)"
        if key == "model":
            part = rows[rows["setting"] == setting]
            backbones = [part.loc[part["arm"] == arm, "backbone"] for arm in ("cnn", "vit")]
            names = " + ".join(str(b.iloc[0]) if len(b) else "?" for b in backbones)
            text += f" ({names})"
        return f"{text} · {method_label(method)}" if several_methods else text

    values = value_order(key, [value_of(s) for s in rows["setting"]]) if key else []
    settings = sorted(
        rows["setting"].unique(),
        key=lambda s: (values.index(value_of(s)) if value_of(s) in values else len(values), s),
    )
    methods = sorted(rows["method"].unique(), key=lambda m: (METHOD_ORDER.get(m, 9), m))
    fractions = sorted(rows["label_fraction"].unique())
    arms = sorted(rows["arm"].unique(), key=lambda a: (ARM_ORDER.get(a, 9), a))
    columns = [_header(key, arm, fraction) for fraction in fractions for arm in arms]
    index = [label(s, m) for s in settings for m in methods
             if ((rows["setting"] == s) & (rows["method"] == m)).any()]  # fmt: skip
    name = ABLATIONS[key].label if key in ABLATIONS else (key or "Setting")
    cells = pd.DataFrame(MISSING, index=pd.Index(index, name=name), columns=columns, dtype=object)
    best = pd.DataFrame(False, index=cells.index, columns=columns, dtype=bool)
    sub = pd.DataFrame("", index=cells.index, columns=columns, dtype=object)
    for item in rows.itertuples(index=False):
        row, column = label(item.setting, item.method), _header(key, item.arm, item.label_fraction)
        cells.loc[row, column] = format_cell(item.mean, getattr(item, spread), int(item.n))
        sub.loc[row, column] = format_interval(item.ci_low, item.ci_high)
    # best per column among the rows of this table (not the whole dataset)
    for column in columns:
        means = {}
        for item in rows.itertuples(index=False):
            if _header(key, item.arm, item.label_fraction) == column and pd.notna(item.mean):
                means[label(item.setting, item.method)] = round(float(item.mean), 4)
        if means:
            lower = bool(rows["metric"].eq("loss").all()) if "metric" in rows else False
            top = min(means.values()) if lower else max(means.values())
            for row, mean in means.items():
                best.loc[row, column] = mean == top
    return Table(title=title, cells=cells, best=best, sub=sub)
