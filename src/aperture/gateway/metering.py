"""Metering: every request's usage is written ahead to this replica's log, then batched into the
daily totals in the database.

Durability is write-ahead logging plus transactional batching:

- `record` appends one JSON line to the replica's log file with one `write` (O_APPEND) before the
  response ends, so a crash of the process loses nothing that was answered (the line is in the
  operating system's page cache);
- a thread wakes every `interval_s`, fsyncs the log, and adds the new lines to the daily totals in
  one database transaction that also moves the log's **mark** (the offset applied): a line is
  applied exactly once, even if the process dies between the fsync and the commit;
- at start, logs left by replicas that are gone (their `flock` is free) are replayed from their
  mark and removed. A power loss can lose at most the last `interval_s` of lines not yet fsynced.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from aperture.core.clock import Clock
from aperture.core.db import Database
from aperture.core.ids import new_id
from aperture.gateway import store
from aperture.gateway.domain import Price, UsageRecord, aggregate

log = logging.getLogger("aperture.gateway.metering")

ROTATE_BYTES = 16 * 1024 * 1024


class Meter:
    def __init__(
        self,
        database: Database,
        directory: Path,
        prices: Callable[[], dict[str, Price]],
        clock: Clock,
        *,
        interval_s: float = 1.0,
    ) -> None:
        self.database = database
        self.directory = directory
        self.prices = prices
        self.clock = clock
        self.interval_s = interval_s
        self._lock = threading.Lock()  # the log file and the buffer
        self._flush_lock = threading.Lock()  # one flush at a time
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._name = ""
        self._offset = 0
        self._buffer: list[UsageRecord] = []
        self.applied = 0  # records added to the totals by this process (tests and metrics)

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self.directory.mkdir(parents=True, exist_ok=True)
            self.recover()
            self._open_log()
            self._thread = threading.Thread(target=self._run, name="gateway-meter", daemon=True)
            self._thread.start()

    def _open_log(self) -> None:
        self._name = f"{new_id()}.log"
        fd = os.open(self.directory / self._name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held while this replica lives
        self._fd, self._offset = fd, 0

    def close(self) -> None:
        """Apply everything recorded, then remove the log (nothing is left to replay)."""
        if self._thread is None:
            return
        self._stopped.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self._thread = None
        self.flush()
        with self._lock:
            self._retire(self._name)

    def _retire(self, name: str) -> None:
        """This replica's log is fully applied: close it, drop its mark and the file (lock held)."""
        if self._fd is not None and name == self._name:
            os.close(self._fd)
            self._fd = None
        self._forget(name)

    def _forget(self, name: str) -> None:
        with self.database.transaction() as connection:
            store.delete_log_mark(connection, name)
        with contextlib.suppress(FileNotFoundError):
            (self.directory / name).unlink()

    # --- recording and applying ------------------------------------------------------------

    def record(self, record: UsageRecord) -> None:
        line = (json.dumps(record.to_json(), separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._fd is None:  # not started (a CLI process): apply at once
                self._apply([record], None, 0)
                return
            os.write(self._fd, line)
            self._offset += len(line)
            self._buffer.append(record)

    def flush(self) -> None:
        """Apply what was recorded. The request path only appends (under a short lock); the fsync
        and the database transaction run outside it, so answering never waits for the database."""
        with self._flush_lock:
            with self._lock:
                if not self._buffer:
                    return
                records, self._buffer = self._buffer, []
                fd, name, offset = self._fd, self._name, self._offset
            try:
                if fd is not None:
                    os.fsync(fd)
                self._apply(records, name if fd is not None else None, offset)
            except BaseException:
                with self._lock:  # kept for the next try; the log has them anyway
                    self._buffer[:0] = records
                raise
            with self._lock:
                # A fully applied log is replaced by a fresh one (only when nothing new is pending).
                if self._fd is not None and self._offset > ROTATE_BYTES and not self._buffer:
                    old = self._name
                    old_fd = self._fd
                    self._open_log()
                    os.close(old_fd)
                    self._forget(old)

    def _apply(self, records: list[UsageRecord], name: str | None, offset: int) -> None:
        rows = aggregate(records, self.prices())
        with self.database.transaction() as connection:
            store.add_usage(connection, rows)
            if name is not None:
                store.put_log_mark(connection, name, offset, self.clock.now())
        self.applied += len(records)

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the database is away: the lines stay in the log, retried next time
                log.exception("could not apply metered usage; it stays in the write-ahead log")

    # --- recovery ---------------------------------------------------------------------------

    def recover(self) -> int:
        """Replay logs whose replica is gone, from their marks; returns the records applied."""
        applied = 0
        for path in sorted(self.directory.glob("*.log")):
            if path.name == self._name:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live replica's log
                data = path.read_bytes()
                with self.database.read() as connection:
                    mark = store.log_mark(connection, path.name)
                end = data.rfind(b"\n") + 1  # a torn last line was never acknowledged
                records = []
                for line in data[mark:end].splitlines():
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        records.append(UsageRecord.from_json(json.loads(line)))
                if records:
                    self._apply(records, path.name, end)
                applied += len(records)
                self._forget(path.name)
                log.info("replayed %d metered requests from %s", len(records), path.name)
            finally:
                os.close(fd)
        return applied
