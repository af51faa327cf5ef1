"""How an area offers a `gateway` subcommand without importing the CLI.

Each area lists `Command`s in its own `cli.py`; `gateway/cli.py` collects them, opens the
services once and passes them in. Arrows: gateway.cli -> area.cli -> area services; an area
never imports `gateway.cli` or `gateway.services`."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]                 # ("retention", "run") -> `gateway retention run`
    # async run(args, services) -> exit code; with offline=True, run(args, config) instead
    # (commands that must work without opening the database, e.g. verifying a bundle).
    run: Callable[[argparse.Namespace, Any], Awaitable[int]]
    configure: Callable[[argparse.ArgumentParser], None] | None = None
    help: str = ""
    description: str = ""
    offline: bool = False
