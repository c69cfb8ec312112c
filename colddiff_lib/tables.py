"""Tables, in one place: CSV and Markdown for results/, HTML for the book, and the CLI's metric table.

Rows are dicts (column -> value); floats are written with four decimals everywhere.
"""

from __future__ import annotations

import csv
import io
from typing import Dict, Optional, Sequence


def to_csv(rows: Sequence[dict]) -> str:
    """Rows as CSV text: the columns of every row, in first-seen order (a row without one leaves it empty);
    floats with four decimals."""
    fields = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()}
        )
    return buf.getvalue()


def to_markdown(
    rows: Sequence[dict], skip: Sequence[str] = ("command", "evaluated_on")
) -> str:
    """Rows as a Markdown table (without the ``skip`` columns), then the commands and machines that made them."""
    # every row's columns
    keys = [k for k in dict.fromkeys(k for row in rows for k in row) if k not in skip]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append(
            "| "
            + " | ".join(
                f"{row[k]:.4f}"
                if isinstance(row.get(k), float)
                else str(row.get(k, ""))
                for k in keys
            )
            + " |"
        )
    made = sorted(
        {
            (row.get("command", ""), row.get("evaluated_on", ""))
            for row in rows
            if row.get("command")
        }
    )
    if made:
        lines += ["", "Made by (command, machine):", ""]
        lines += [f"    {c}    # {m}" if m else f"    {c}" for c, m in made]
    return "\n".join(lines) + "\n"


# : The columns that name a row of a results table: a new row with the same values
# replaces the old one.
ROW_KEY = ("model", "method", "noise_std")


def merge_rows(old: Sequence[dict], new: Sequence[dict], key: Sequence[str] = ROW_KEY):
    """``(rows, replaced)``: ``old`` with every row that a row of ``new`` names the same (by ``key``, compared
    as text, as CSV cells are) replaced in place, and the other new rows appended; ``replaced`` lists the
    keys of the replaced rows. Nothing of ``old`` that ``new`` does not name is lost."""

    def name(row):
        return tuple(
            ""
            if row.get(k) is None
            else (f"{row[k]:.4f}" if isinstance(row[k], float) else str(row[k]))
            for k in key
        )

    incoming = {name(row): row for row in new}
    rows, replaced = [], []
    for row in old:
        if name(row) in incoming:
            rows.append(incoming.pop(name(row)))
            replaced.append(name(row))
        else:
            rows.append(row)
    return rows + list(incoming.values()), replaced


def read_csv(path) -> list:
    """The rows of a CSV file as dicts of strings (``[]`` when there is no such file)."""
    import os

    if not os.path.isfile(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def html_table(
    head: Sequence[str],
    rows: Sequence,
    title: Optional[str] = None,
    columns: Optional[Sequence[str]] = None,
    headers: Optional[Dict[str, str]] = None,
):
    """An IPython ``HTML`` table from column titles and rows of values (escaped), with an optional bold title.

    Styled inline (padding, rules, numbers right-aligned) so that it reads the same in Jupyter, Colab
    and the built book.

    Args:
        head: the column names.
        rows: lists of values in ``head``'s order, or dicts keyed by column name (a CSV row); a dict
            without one of the columns leaves its cell empty.
        columns: the columns to show, by name and in this order; a name that is not in ``head`` is
            left out, so a table read from a CSV whose columns have changed shows the ones it has.
            Default: all of ``head``.
        title: a bold line above the table, or None.
        headers: ``{name: title}`` shown instead of a column's name (short titles keep a table narrow).
    """
    import html

    from IPython.display import HTML

    head = list(head)
    keep = head if columns is None else [c for c in columns if c in head]

    def values(row):
        if isinstance(row, dict):
            return [row.get(c, "") for c in keep]
        by_name = dict(zip(head, row))
        return [by_name.get(c, "") for c in keep]

    def is_number(value) -> bool:
        try:
            float(str(value).replace(",", ""))
            return True
        except ValueError:
            return False

    def cells(tag, values, rule):
        out = []
        for v in values:
            align = "right" if tag == "td" and is_number(v) else "left"
            out.append(
                f'<{tag} style="padding: 3px 8px; text-align: {align}; border-bottom: {rule};">'
                f"{html.escape(str(v))}</{tag}>"
            )
        return "".join(out)

    titles = [(headers or {}).get(c, c) for c in keep]
    caption = f"<p><b>{html.escape(title)}</b></p>" if title else ""
    header = f"<tr>{cells('th', titles, '2px solid #888')}</tr>"
    body = "".join(
        f"<tr>{cells('td', values(row), '1px solid #ddd')}</tr>" for row in rows
    )
    return HTML(
        f'{caption}<table style="border-collapse: collapse; margin-bottom: 1em;">{header}{body}</table>'
    )


def format_table(
    rows: Dict[str, dict], keys: Sequence[str] = ("rmse", "ssim", "psnr")
) -> str:
    """A Markdown table of ``{row name: {metric: value}}`` (the CLI's ``evaluate`` output)."""
    return to_markdown(
        [
            {"method": name, **{k: values[k] for k in keys}}
            for name, values in rows.items()
        ]
    ).rstrip()
