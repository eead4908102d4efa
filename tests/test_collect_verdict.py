"""The collector says in words which pretraining paid: a line per method and arm that did not
beat its supervised twin, and the best pretraining per arm (report.verdict)."""

from __future__ import annotations

import pandas as pd

from cass_hpc.report.verdict import best_pretraining, not_above_supervised


def _paired(rows: list[tuple[str, str, str, float, float, float]]) -> pd.DataFrame:
    """(method, baseline, arm, mean_method, mean_baseline, p) rows on digits at 10 %, n = 3."""
    return pd.DataFrame(
        [
            {"experiment": "e", "dataset": "digits", "setting": "", "arm": arm,
             "label_fraction": 0.1, "metric": "macro_f1", "method": method, "baseline": baseline,
             "n": 3, "mean_method": ours, "mean_baseline": theirs, "mean_diff": ours - theirs,
             "p_t": p}
            for method, baseline, arm, ours, theirs, p in rows
        ]
    )  # fmt: skip


PAIRED = _paired([
    ("simclr", "supervised", "cnn", 0.81, 0.77, 0.03),
    ("cass", "supervised", "cnn", 0.75, 0.77, 0.40),
    ("cass", "dino", "cnn", 0.75, 0.70, 0.10),  # not against supervised: no line
    ("simclr", "supervised", "vit", 0.50, 0.52, 0.60),
    ("cass", "supervised", "vit", 0.52, 0.52, float("nan")),
    ("cass", "supervised", "ensemble", 0.10, 0.90, 0.01),  # derived arms: no line
])  # fmt: skip


def test_every_method_and_arm_at_or_below_supervised_gets_one_line_with_its_p_value() -> None:
    assert not_above_supervised(PAIRED) == [
        "CASS · CNN did not beat supervised on digits at 10%: Δ -0.020 (p=0.4, n=3)",
        "SimCLR · ViT did not beat supervised on digits at 10%: Δ -0.020 (p=0.6, n=3)",
        "CASS · ViT did not beat supervised on digits at 10%: Δ +0.000 (n=3)",
    ]


def test_the_best_pretraining_per_arm_is_named_and_says_when_none_beat_supervised() -> None:
    assert best_pretraining(PAIRED) == [
        "best pretraining for the CNN on digits at 10%: SimCLR 0.810 (supervised 0.770, "
        "Δ +0.040, p=0.03, n=3)",
        "best pretraining for the ViT on digits at 10%: CASS 0.520 (supervised 0.520, "
        "Δ +0.000, n=3); none beat supervised",
    ]
    assert best_pretraining(PAIRED.iloc[0:0]) == [] and not_above_supervised(PAIRED[:0]) == []
