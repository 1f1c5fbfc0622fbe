"""The markdown section a benchmark script writes into ``benchmarks/results``: a heading, the
line saying when and by which command it was generated, its notes and one table."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path


def generated_by() -> str:
    """'Generated <UTC time> by `<the command that ran this script>`'."""
    script = Path(sys.argv[0]).name
    command = " ".join(["PYTHONPATH=src python", f"benchmarks/{script}", *sys.argv[1:]])
    return f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `{command}`"


def write_report(
    out: Path, title: str, about: str, columns: Sequence[str], aligns: str, rows: Sequence[str]
) -> str:
    """Write the section to ``out`` and return it: ``about`` follows the generated-by line;
    ``aligns`` has one letter per column, l (left) or r (right)."""
    rule = "|" + "|".join("---" if a == "l" else "--:" for a in aligns) + "|"
    text = "\n".join(
        [f"## {title}", "", f"{generated_by()} {about}", "", "| " + " | ".join(columns) + " |",
         rule, *rows, ""]
    )  # fmt: skip
    out.write_text(text, encoding="utf-8")
    return text
