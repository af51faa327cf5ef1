"""Run the `gateway` command as a user would: a subprocess with a config file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_cli(config_path: Path, *args: str, timeout: float = 60,
            input_text: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config_path),
                           *args], capture_output=True, text=True, timeout=timeout,
                          input=input_text)


def write_config(path: Path, data_dir: Path, **sections: dict[str, object]) -> Path:
    """A TOML config with data_dir and any extra `section={key: value}` tables."""
    lines = ["[storage]", f'data_dir = "{data_dir}"']
    for name, values in sections.items():
        if name == "storage":
            lines.extend(f"{k} = {_toml(v)}" for k, v in values.items())
            continue
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {_toml(v)}" for k, v in values.items())
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
