"""The lifecycle area as gateway/features.py sees it: its background jobs and its CLI
commands. (Retention, holds, subject requests, key rotation and offboarding themselves live
in the modules beside this one; their HTTP handlers in gateway/web/.)

Invariants:
- Imports neither gateway.services nor gateway.cli: the app and the CLI hand services in.
- Every background loop is a PeriodicJob owned by its service and stopped at app cleanup.
"""

from __future__ import annotations

from typing import Any

from gateway.core.jobs import start_for_app_lifetime
from gateway.lifecycle.blind_index import get_blind_index_service
from gateway.lifecycle.cli import cli_commands
from gateway.lifecycle.ledger import ledger_replay_job, replay_deletion_ledger
from gateway.lifecycle.retention import get_retention
from gateway.lifecycle.rotation import get_key_service

__all__ = ["cli_commands", "startup"]


async def startup(app: Any, services: Any) -> None:
    """The in-process retention sweep (every `[retention] sweep_interval_seconds`) and the
    key rotation job (resumes any rotation a stopped process left), and the blind-index
    planner and reindex job (resumes any reindex a stopped process left). First, the key
    store's deletion ledger is replayed, so a restored database never serves an erased
    call."""
    await replay_deletion_ledger(services, get_retention(services).remove_blobs)
    # Recordings stored before per-recording keys: their data keys move into the key store.
    await services.recordings.migrate_recording_keys()
    await start_for_app_lifetime(app, ledger_replay_job(services))
    await start_for_app_lifetime(app, get_retention(services))
    await start_for_app_lifetime(app, get_key_service(services))
    await start_for_app_lifetime(app, get_blind_index_service(services))
