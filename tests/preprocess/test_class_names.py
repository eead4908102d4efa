"""Class names that look like a typo of a larger class: flagged; siblings and codes are not."""

from __future__ import annotations

import pytest

from preprocess.readers.class_names import look_alikes, one_edit_apart

CASES = {
    "letter-changed": (
        {"cat_a": 10, "cat_b": 7, "cat_c": 10, "cat_x": 3},
        {"cat_x": ["cat_a", "cat_b", "cat_c"]},
    ),
    "letters-swapped": (
        {"pneumonia": 100, "pnuemonia": 4, "normal": 50},
        {"pnuemonia": ["pneumonia"]},
    ),
    "case-and-separator-twin": ({"cat_b": 40, "Cat B": 40}, {"cat_b": ["Cat B"]}),
    "siblings-of-similar-size": ({"grade_1": 300, "grade_3": 101}, {}),
    "two-edits-apart": ({"normal": 1000, "abnormal": 10}, {}),
    "short-codes": ({"AK": 45, "SK": 257, "ML": 10, "MEL": 100}, {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_look_alikes_flag_a_much_smaller_class_one_edit_away(case: str) -> None:
    counts, expected = CASES[case]
    assert look_alikes(counts) == expected


def test_one_edit_apart_counts_change_insert_delete_and_swap() -> None:
    assert one_edit_apart("cat_b", "cat_x") and one_edit_apart("melanoma", "melanom")
    assert one_edit_apart("nevus", "nevsu") and one_edit_apart("nevus", "nevuss")
    assert not one_edit_apart("nevus", "nevus") and not one_edit_apart("nevus", "vneus")
    assert not one_edit_apart("normal", "abnormal")
