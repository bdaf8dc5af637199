"""Names in the order a person expects: "piece 2" before "piece 12" (numbers compared as numbers).

For what is shown (the window's lists of pieces and skipped files, the command line's list of skipped
files); a corpus keeps its own order, which its train/validation split depends on.
"""
from __future__ import annotations

import re


def natural_order_key(name: str) -> list:
    """A sort key: runs of digits compare as numbers, the rest without regard to case."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.casefold())
            for part in re.split(r"(\d+)", name) if part]


__all__ = ["natural_order_key"]
