"""A :class:`~cass_hpc.report.tables.Table` as Markdown, LaTeX (booktabs) or a rich table; the
column's best cells in bold in each.

Example:
    >>> print(to_markdown(table))
    >>> print(to_latex(table))   # \\toprule … \\bottomrule; needs \\usepackage{booktabs}
"""

from __future__ import annotations

import pandas as pd
from rich.markup import escape
from rich.table import Table as RichTable

from cass_hpc.report.tables import Table


def _markdown_cell(value: object) -> str:
    return str(value).replace("|", "\\|")


def _joined(table: Table, label: object, column: object, value: object, sep: str = " ") -> str:
    """A cell's text with its second line (:attr:`Table.sub`) after ``sep``, if it has one."""
    sub = table.sub_text(label, column)
    return f"{value}{sep}{sub}" if sub else str(value)


def to_markdown(table: Table, heading: str = "##") -> str:
    """The title as a heading, a GitHub Markdown table (best cells ``**bold**``; a cell's second
    line after it on the same line), the notes."""
    cells = table.cells
    header = [_markdown_cell(cells.index.name or ""), *map(_markdown_cell, cells.columns)]
    lines = [f"{heading} {table.title}", ""] if table.title else []
    lines += [
        "| " + " | ".join(header) + " |",
        "| :--- | " + " | ".join("---:" for _ in cells.columns) + " |",
    ]
    for label, row in cells.iterrows():
        values = [
            f"**{_markdown_cell(value)}**{_markdown_cell(' ' + sub) if sub else ''}"
            if table.is_best(label, column)
            else _markdown_cell(_joined(table, label, column, value))
            for column, value in row.items()
            for sub in [table.sub_text(label, column)]
        ]
        lines.append("| " + " | ".join([_markdown_cell(label), *values]) + " |")
    lines += [""] + list(table.notes) if table.notes else []
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "Δ": r"$\Delta$", "—": "---", "–": "--", "−": "-", "·": r"$\cdot$",
    "×": r"$\times$",
}  # fmt: skip


def _latex_text(value: object) -> str:
    """Text for LaTeX: special characters escaped in one pass; ``±``, ``Δ``, ``·`` as math."""
    return "".join(_LATEX_SPECIAL.get(char, char) for char in str(value))


def to_latex(table: Table) -> str:
    """A booktabs ``tabular`` (``\\toprule``/``\\midrule``/``\\bottomrule``), best cells in
    ``\\textbf`` (a cell's second line after it), the title as a comment line above it, the
    notes as comment lines below it."""
    cells = table.cells
    align = "l" + "r" * len(cells.columns)
    lines = [f"% {_latex_text(table.title)}"] if table.title else []
    lines += [f"\\begin{{tabular}}{{{align}}}", "\\toprule"]
    header = [_latex_text(cells.index.name or ""), *map(_latex_text, cells.columns)]
    lines += [" & ".join(header) + r" \\", "\\midrule"]
    for label, row in cells.iterrows():
        values = [
            (f"\\textbf{{{_latex_text(value)}}}" if table.is_best(label, column)
             else _latex_text(value)) + (f" {_latex_text(sub)}" if sub else "")
            for column, value in row.items()
            for sub in [table.sub_text(label, column)]
        ]  # fmt: skip
        lines.append(" & ".join([_latex_text(label), *values]) + r" \\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    lines += [f"% {_latex_text(note)}" for note in table.notes]
    return "\n".join(lines) + "\n"


def to_rich(table: Table) -> RichTable:
    """A rich table for the console; best cells bold, a cell's second line (dim) under it."""
    cells = table.cells
    rich_table = RichTable(title=escape(table.title), title_justify="left")
    rich_table.add_column(escape(str(cells.index.name or "")), no_wrap=True)
    for column in cells.columns:
        rich_table.add_column(escape(str(column)), justify="right", no_wrap=True)
    for label, row in cells.iterrows():
        values = [
            (f"[bold]{escape(str(value))}[/bold]" if table.is_best(label, column)
             else escape(str(value))) + (f"\n[dim]{escape(sub)}[/dim]" if sub else "")
            for column, value in row.items()
            for sub in [table.sub_text(label, column)]
        ]  # fmt: skip
        rich_table.add_row(escape(str(label)), *values)
    return rich_table


def to_frame(table: Table) -> pd.DataFrame:
    """The table as a flat frame (row label as first column) for CSV, best cells suffixed ``*``,
    a cell's second line after it."""
    cells = table.cells.copy()
    for column in cells.columns:
        cells[column] = [
            _joined(table, label, column, f"{value} *" if table.is_best(label, column) else value)
            for label, value in cells[column].items()
        ]
    return cells.reset_index()
