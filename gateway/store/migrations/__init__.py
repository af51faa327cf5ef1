"""Numbered schema migrations, written once in the portable SQL subset (see
gateway/store/dialect.py); each backend applies them in order, once, under its own lock."""

from __future__ import annotations

import sqlite3
from importlib import resources


def migration_files() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every migration, in order."""
    out = []
    for entry in resources.files(__name__).iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            out.append((int(name[:4]), name, entry.read_text()))
    return sorted(out)


def split_statements(sql: str) -> list[str]:
    """A migration file as its statements (trigger bodies kept whole)."""
    statements, current = [], []
    for line in sql.splitlines():
        if line.strip().startswith("--"):
            continue
        current.append(line)
        # sqlite3's parser knows where a statement (including BEGIN ... END) ends.
        if sqlite3.complete_statement("\n".join(current)):
            statements.append("\n".join(current).strip())
            current = []
    if "\n".join(current).strip():
        raise ValueError("migration ends with an incomplete statement")
    return [s for s in statements if s.rstrip(";").strip()]
