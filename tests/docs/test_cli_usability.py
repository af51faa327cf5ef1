"""The CLI is usable without reading the source: every command and option has help text,
long operations report progress, destructive commands explain --yes, and a missing config
is named as the likely cause instead of suggesting a second data directory."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path

from gateway.cli import build_parser
from tests.support.cli import run_cli, write_config


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                assert helps.get(name), f"`gateway {' '.join(path + (name,))}` has no help"
                yield from _commands(sub, path + (name,))
            return
    yield path, parser


def test_every_command_and_option_has_help():
    commands = list(_commands(build_parser()))
    assert len(commands) >= 11
    for path, parser in commands:
        for action in parser._actions:
            if action.option_strings or action.dest not in ("help",):
                assert action.help, f"gateway {' '.join(path)}: {action.dest} has no help"


def test_offboarding_explains_yes(tmp_path: Path):
    config = write_config(tmp_path / "gw.toml", tmp_path / "data")
    assert run_cli(config, "init").returncode == 0
    tenant = json.loads(run_cli(config, "tenant", "create", "--name", "x", "--json").stdout)
    refused = run_cli(config, "tenant", "offboard", tenant["tenant_id"], input_text="")
    assert refused.returncode == 2
    assert "cannot be undone" in refused.stderr and "--yes" in refused.stderr
    assert "--yes" in run_cli(config, "tenant", "offboard", "--help").stdout


def test_keys_rotate_wait_reports_progress(tmp_path: Path):
    config = write_config(tmp_path / "gw.toml", tmp_path / "data",
                          keys={"grace_seconds": 3.0, "poll_interval_seconds": 0.2})
    assert run_cli(config, "init").returncode == 0
    tenant = json.loads(run_cli(config, "tenant", "create", "--name", "x", "--json").stdout)
    done = run_cli(config, "keys", "rotate", "--tenant", tenant["tenant_id"], "--wait")
    assert done.returncode == 0, done.stderr
    assert "rotation waiting" in done.stderr and "grace_seconds" in done.stderr
    assert "completed" in done.stdout


def test_without_a_config_the_cli_names_the_likely_cause(tmp_path: Path):
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "tenant", "create",
                             "--name", "x"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "--config" in result.stderr and "second, empty data directory" in result.stderr
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_serve_stops_with_exit_0_on_ctrl_c(served_gateway):
    _workdir, _port, _metrics, server = served_gateway
    server.send_signal(signal.SIGINT)
    assert server.wait(timeout=20) == 0
