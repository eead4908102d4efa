"""Per-class test metrics (results.json ``per_class``, issue 14) averaged over replicates.

The paper reports one number per table cell; on imbalanced sets (ISIC-2019, Dermofit) a
macro or pooled score hides which classes a method gets right. Each cell records, per class on
the test split, precision, recall, F1, one-vs-rest AUROC (null when the class has no positive
or no negative test example) and the support; here they are averaged over the replicates
(split_seed, seed) of each (experiment, dataset, setting, method, arm, backbone, fraction) and
written as ``per_class.csv``. A record without ``per_class`` (older) is left out.

Example:
    >>> per_class_frame(frame).query("class_name == 'circle'")
"""

from __future__ import annotations

import pandas as pd

from cass_hpc.report.format import paper_order
from cass_hpc.report.records import CELL_COLUMNS, PER_CLASS_FIELDS, REPLICATE_COLUMNS

PER_CLASS_COLUMNS = (*CELL_COLUMNS, "class_index", "class_name", *PER_CLASS_FIELDS, "n")


def per_class_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, class): the mean over replicates of each of :data:`PER_CLASS_FIELDS`
    (a null AUROC left out of its mean) and ``n``, the replicates that have the class."""
    rows = []
    if "per_class" not in frame:
        return pd.DataFrame(columns=list(PER_CLASS_COLUMNS))
    for _, record in frame.iterrows():
        block = record["per_class"]
        if not isinstance(block, dict):
            continue
        for index, name in enumerate(block["names"]):
            rows.append({
                **{c: record[c] for c in (*CELL_COLUMNS, *REPLICATE_COLUMNS)},
                "class_index": index, "class_name": name,
                **{field: block[field][index] for field in PER_CLASS_FIELDS},
            })  # fmt: skip
    if not rows:
        return pd.DataFrame(columns=list(PER_CLASS_COLUMNS))
    long = pd.DataFrame(rows)
    keys = [*CELL_COLUMNS, "class_index", "class_name"]
    grouped = long.groupby(keys, sort=True, dropna=False)
    means = grouped[list(PER_CLASS_FIELDS)].mean()
    means["n"] = grouped.size()
    return paper_order(means.reset_index()).reset_index(drop=True)[list(PER_CLASS_COLUMNS)]
