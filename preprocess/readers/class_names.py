"""Class names that look like a typo of another: a mistyped label silently makes a new class.

A CSV label is free text, so ``cat_x`` on a line meant for ``cat_b`` packs a class of its own.
``look_alikes`` flags a class whose name equals another's but for case and `` _-`` separators,
or is one edit (a letter changed, added, dropped, or two neighbours swapped) from the name of a
class with far more images. One edit, not a similarity ratio: ``normal``/``abnormal`` are
close by ratio (0.86) but two edits apart, and legitimately unbalanced. Sibling names one edit
apart (``grade_1``/``grade_3``) pass as long as neither has at most 1/``TYPO_RATIO`` of the
other's images, and so do short codes (``AK``/``SK``, ``ML``/``MEL``: under ``MIN_LENGTH``
characters); readers only warn, never refuse, on a look-alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

TYPO_RATIO = 3  # a look-alike with at most 1/3 of the images of a class it resembles is flagged
MIN_LENGTH = 4  # shorter names (AK/SK, ML/MEL: dermatology codes) are often one edit apart


def one_edit_apart(a: str, b: str) -> bool:
    """True when ``b`` is ``a`` with one character changed, added or dropped, or two
    neighbouring characters swapped (Damerau-Levenshtein distance 1)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        swapped = (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and (a[diff[0]], a[diff[1]]) == (b[diff[1]], b[diff[0]])
        )
        return len(diff) == 1 or swapped
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def _folded(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.casefold())


def look_alikes(counts: Mapping[str, int]) -> dict[str, list[str]]:
    """Each suspect class name → the larger names it looks like a typo of (in ``counts``
    order), given every class's image count. A suspect is the same name as another up to case
    and separators (whatever the counts), or one edit from a class with ``TYPO_RATIO`` times
    its images or more (both names ``MIN_LENGTH`` characters or longer)."""
    suspects: dict[str, list[str]] = {}
    for name, count in counts.items():
        twins = [  # of two twins with as many images, the later name is the suspect
            o
            for o in counts
            if o != name and _folded(o) == _folded(name) and (count, o) < (counts[o], name)
        ]
        near = [
            o
            for o in counts
            if min(len(name), len(o)) >= MIN_LENGTH
            and one_edit_apart(name.casefold(), o.casefold())
        ]
        if twins or any(count * TYPO_RATIO <= counts[o] for o in near):
            suspects[name] = [o for o in counts if o in twins or o in near and counts[o] > count]
    return suspects
