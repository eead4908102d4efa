"""Label tables (CSV) as the CSV-driven readers read them: header, line numbers, file paths.

A table is UTF-8 (a byte-order mark, as Excel writes, is fine) with a header line. Column names
match case-insensitively and ignoring surrounding spaces; cells are stripped. Blank lines are
skipped. Every error names the CSV and the line (the header is line 1) and says what to do.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Row:
    """One data line: its line number in the file and its cells by column name."""

    line: int
    cells: dict[str, str]


def read_rows(
    path: Path, required: Sequence[str], optional: Sequence[str] = ()
) -> tuple[list[str], list[Row]]:
    """The columns and rows of ``path``: ``required`` and ``optional`` columns are named as the
    reader spells them (whatever their case in the file), other columns by their stripped header."""
    if not path.is_file():
        raise ValueError(f"{path}: no such CSV file")
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{path}: empty file; expected a header line {','.join(required)}")
            columns = _columns(path, [h.strip() for h in header], required, optional)
            rows = []
            for cells in reader:
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) != len(columns):
                    raise ValueError(
                        f"{path}: line {reader.line_num} has {len(cells)} cells but the header "
                        f"has {len(columns)}; quote cells that hold commas"
                    )
                cells_by_column = dict(zip(columns, (c.strip() for c in cells), strict=True))
                rows.append(Row(reader.line_num, cells_by_column))
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason}); save it as a UTF-8 CSV") from err
    except csv.Error as err:
        raise ValueError(f"{path}: not a readable CSV ({err})") from err
    if not rows:
        raise ValueError(f"{path}: no data lines below the header; add one line per image")
    return columns, rows


def _columns(
    path: Path, header: list[str], required: Sequence[str], optional: Sequence[str]
) -> list[str]:
    """Header names with the known columns spelled as the reader expects them."""
    known = {name.casefold(): name for name in (*required, *optional)}
    columns = [known.get(name.casefold(), name) for name in header]
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise ValueError(f"{path}: column {duplicates[0]!r} appears twice in the header")
    missing = [name for name in required if name not in columns]
    if missing:
        raise ValueError(
            f"{path}: header {','.join(header)!r} lacks column(s) {', '.join(missing)}; "
            f"the first line must name the columns {','.join(required)}"
            + ("; the file looks separated by ';' or tabs: save it comma-separated"
               if any(sep in ",".join(header) for sep in ";\t") else "")
        )  # fmt: skip
    return columns


def image_file(
    csv_path: Path,
    row: Row,
    seen: dict[Path, int],
    skip_bad: bool,
    skipped: list[tuple[str, str]],
    column: str = "file",
) -> tuple[str, Path] | None:
    """(sample id, path) of the file ``row`` names in ``column`` — absolute, or relative to the
    CSV's folder; the id is the path relative to that folder (else absolute). An empty cell or a
    file named twice raises; a missing file raises, or is recorded in ``skipped`` (--skip-bad)
    and gives None."""
    name = row.cells[column]
    if not name:
        raise ValueError(
            f"{csv_path}: line {row.line}: empty {column} cell; name the image or remove the line"
        )
    base = Path(os.path.abspath(csv_path.parent))
    path = Path(os.path.normpath(base / Path(name).expanduser()))  # symlinks kept in the id
    real = path.resolve()
    if real in seen:
        raise ValueError(
            f"{csv_path}: line {row.line} names {name}, the file line {seen[real]} names; "
            f"remove the duplicate line"
        )
    seen[real] = row.line
    sample_id = path.relative_to(base).as_posix() if path.is_relative_to(base) else str(path)
    if path.is_file():
        return sample_id, path
    reason = f"line {row.line} names {name}, which does not exist"
    if not skip_bad:
        raise ValueError(
            f"{csv_path}: {reason} ({path}) — fix the path (relative to the CSV's folder, or "
            f"absolute) or pass --skip-bad to leave it out"
        )
    skipped.append((sample_id, reason))
    return None


def existing(seen: dict[Path, int]) -> list[Path]:
    """The files of ``seen`` that exist, sorted (a missing, skipped file has no size to hash)."""
    return sorted(path for path in seen if path.is_file())
