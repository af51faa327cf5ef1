"""The writer process's side (started by gateway/store/writer_process.py as
`python -m gateway.store.writer_child FD`): open the database, then run one step per
message in its own transaction and answer with its outcome.

Invariants:
- A step's answer of success is sent only after its COMMIT; a refused or failed step is
  rolled back whole and answered (False, exception class name), never with its message
  (which could quote data).
- Ctrl-C is ignored: the gateway decides when this process stops, by closing its end of
  the socket, so a step under way is never cut short; EOF ends the loop.
"""

from __future__ import annotations

import importlib
import pickle
import signal
import socket
import sqlite3
import sys
from collections.abc import Callable
from typing import Any

from gateway.store.sqlite import SqliteWriteTx
from gateway.store.writer_process import FRAME_HEADER, frame


def _receive(sock: socket.socket) -> Any:
    header = _read_exactly(sock, FRAME_HEADER.size)
    if header is None:
        return None
    (size,) = FRAME_HEADER.unpack(header)
    data = _read_exactly(sock, size)
    if data is None:
        return None
    return pickle.loads(data)


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            return None       # the gateway closed its end
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _serve(sock: socket.socket) -> None:
    opening = _receive(sock)
    if opening is None:
        return
    path, pragmas = opening
    db = sqlite3.connect(path, isolation_level=None)
    db.row_factory = sqlite3.Row
    for pragma in pragmas:
        db.execute(pragma)
    sock.sendall(frame("ready"))
    targets: dict[str, Callable[[Any, Any], Any]] = {}
    while True:
        message = _receive(sock)
        if message is None:
            db.close()
            return
        target, payload = message
        fn = targets.get(target)
        if fn is None:
            module, _, name = target.partition(":")
            fn = targets[target] = getattr(importlib.import_module(module), name)
        try:
            db.execute("BEGIN IMMEDIATE")
            answer = fn(SqliteWriteTx(db), payload)
            db.execute("COMMIT")
        except Exception as exc:    # refused or failed: nothing of the step stays
            if db.in_transaction:
                db.execute("ROLLBACK")
            sock.sendall(frame((False, type(exc).__name__)))
            continue
        sock.sendall(frame((True, answer)))


def main(argv: list[str]) -> int:
    # Ctrl-C reaches the whole process group: the gateway decides when this child stops
    # (it closes the socket), so a step under way is not cut short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=int(argv[0]))
    try:
        _serve(sock)
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
