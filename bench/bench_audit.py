"""Transparency-log benchmarks, each figure beside a peer measured in the same run, as a ratio.

1. `aperture audit verify` over 1,000,000 events on SQLite (target: under 10 s), beside the
   least any verifier must do: read every row with raw sqlite3 and SHA-256 it once.
2. Inclusion proofs at 1,000,000 leaves (target: median under 5 ms), beside the naive proof
   that reads every leaf hash.
3. Append throughput, one event per transaction and in batches, beside raw sqlite3 single-row
   insert transactions on the same disk at the same durability (WAL with synchronous=NORMAL,
   then FULL); target: at least half the raw rate.

Run it alone (the machine is shared), from the repository root:

    flock /tmp/aperture-bench.lock .venv/bin/python bench/bench_audit.py

Working files go under bench/.work/ and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event

from aperture.audit.domain import EVENT_SCHEMA_VERSION, SALT_SIZE, inclusion_proof, leaf_hash, seal_event
from aperture.audit.fields import fields_of
from aperture.bootstrap import Services, build_services, init_instance
from aperture.core.ids import new_id
from aperture.settings import Settings

WORK = Path(__file__).resolve().parent / ".work"
ACTOR = "alice (key 1a2b3c4d)"
ACTION = "registry.version.registered"


@dataclass
class Figure:
    name: str
    ours: float
    unit: str
    peer_name: str
    peer: float
    higher_is_better: bool
    target: str = ""

    @property
    def ratio(self) -> float:
        return self.ours / self.peer if self.peer else float("nan")


FIGURES: list[Figure] = []


def report(figure: Figure) -> None:
    FIGURES.append(figure)
    print(
        f"  {figure.name}: {figure.ours:,.3f} {figure.unit}  |  {figure.peer_name}: {figure.peer:,.3f} {figure.unit}"
        f"  |  ratio {figure.ratio:.3g}{'  ' + figure.target if figure.target else ''}",
        flush=True,
    )


def info(text: str) -> None:
    print(f"  {text}", flush=True)


def median_of(values: list[float]) -> float:
    return statistics.median(values)


def details(i: int) -> dict[str, Any]:
    return {"name": "smollm2", "version": f"1.{i}", "files": 3}


def stored_row(event_id: str, at: str, resource: str, event_details: dict[str, Any]) -> tuple[Any, ...]:
    """The columns `AuditLog.append` stores for an event (version 2: public leaf, private half)."""
    sealed = seal_event(
        fields_of(ACTION),
        upper_tier=False,
        event_id=event_id,
        occurred_at=at,
        actor=ACTOR,
        action=ACTION,
        resource=resource,
        details=event_details,
        asset=None,
        salts=os.urandom(2 * SALT_SIZE),
    )
    return (
        event_id,
        at,
        sealed.actor,
        ACTION,
        sealed.resource,
        sealed.details,
        leaf_hash(sealed.leaf),
        EVENT_SCHEMA_VERSION,
        sealed.commitments,
        sealed.private,
    )


def new_instance(home: Path, synchronous: str = "NORMAL") -> Services:
    services = build_services(Settings(home=home))

    @event.listens_for(services.database.engine, "connect")
    def _durability(dbapi_connection: Any, _record: Any) -> None:
        # Registered after aperture's own pragmas, so this one wins.
        dbapi_connection.execute(f"PRAGMA synchronous={synchronous}")

    init_instance(services)
    return services


def raw_connection(path: Path, synchronous: str, ddl: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={synchronous}")
    connection.execute(ddl)
    return connection


# --- 3. appends -----------------------------------------------------------------------------


def bench_appends(run_dir: Path, synchronous: str, per_round: int, rounds: int, batch: int) -> None:
    print(f"\n== append throughput, SQLite WAL + synchronous={synchronous} ({per_round} events x {rounds} rounds)")
    services = new_instance(run_dir / f"append-{synchronous}", synchronous)
    with sqlite3.connect(services.settings.home / "aperture.db") as probe:
        ddl = probe.execute("SELECT sql FROM sqlite_master WHERE name = 'audit_events'").fetchone()[0]
    from aperture.audit.store import _INSERT_EVENT

    raw_same = raw_connection(run_dir / f"raw-same-{synchronous}.db", synchronous, ddl)
    raw_min = raw_connection(
        run_dir / f"raw-min-{synchronous}.db", synchronous, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"
    )
    counter = [0]

    def params(i: int) -> tuple[Any, ...]:
        return stored_row(new_id(), "2026-01-01T00:00:00.000000Z", f"model:m/versions/{i}", details(0))

    def raw_min_single() -> None:
        for _ in range(per_round):
            with raw_min:
                raw_min.execute("INSERT INTO t (v) VALUES (?)", ("x" * 100,))

    def raw_same_single() -> None:
        prepared = [params(i) for i in range(per_round)]  # prepared outside the timing below
        cursor = raw_same.cursor()
        started = time.perf_counter()
        for row in prepared:
            with raw_same:
                cursor.execute(_INSERT_EVENT, row)
        timings["raw same row, one per tx"] = time.perf_counter() - started

    def raw_same_batch() -> None:
        prepared = [params(i) for i in range(per_round)]
        cursor = raw_same.cursor()
        started = time.perf_counter()
        for start in range(0, per_round, batch):
            with raw_same:
                for row in prepared[start : start + batch]:
                    cursor.execute(_INSERT_EVENT, row)
        timings["raw same row, batches"] = time.perf_counter() - started

    def ours_single() -> None:
        for _ in range(per_round):
            counter[0] += 1
            with services.database.transaction() as connection:
                services.audit.append(
                    connection,
                    actor=ACTOR,
                    action=ACTION,
                    resource=f"model:m/versions/{counter[0]}",
                    details=details(0),
                )

    def ours_held() -> None:
        with services.database.engine.connect() as connection:
            for _ in range(per_round):
                counter[0] += 1
                with connection.begin():
                    services.audit.append(
                        connection,
                        actor=ACTOR,
                        action=ACTION,
                        resource=f"model:m/versions/{counter[0]}",
                        details=details(0),
                    )

    def ours_record() -> None:
        for _ in range(per_round):
            counter[0] += 1
            services.audit.record(
                actor=ACTOR, action=ACTION, resource=f"model:m/versions/{counter[0]}", details=details(0)
            )

    def ours_batch() -> None:
        for _ in range(0, per_round, batch):
            with services.database.transaction() as connection:
                for _ in range(batch):
                    counter[0] += 1
                    services.audit.append(
                        connection,
                        actor=ACTOR,
                        action=ACTION,
                        resource=f"model:m/versions/{counter[0]}",
                        details=details(0),
                    )

    rates: dict[str, list[float]] = {}
    timings: dict[str, float] = {}
    timed: list[tuple[str, Callable[[], None]]] = [
        ("raw minimal, one per tx", raw_min_single),
        ("aperture, Database.transaction() per event", ours_single),
        ("aperture, held connection, one tx per event", ours_held),
        ("aperture, AuditLog.record() standalone event", ours_record),
        ("aperture, batches", ours_batch),
    ]
    for _ in range(rounds):
        for name, function in timed:
            started = time.perf_counter()
            function()
            rates.setdefault(name, []).append(per_round / (time.perf_counter() - started))
        for name, function in (
            ("raw same row, one per tx", raw_same_single),
            ("raw same row, batches", raw_same_batch),
        ):
            function()
            rates.setdefault(name, []).append(per_round / timings[name])
    rate = {name: median_of(values) for name, values in rates.items()}
    unit = "events/s"
    for ours in (
        "aperture, AuditLog.record() standalone event",
        "aperture, Database.transaction() per event",
        "aperture, held connection, one tx per event",
    ):
        for peer in ("raw minimal, one per tx", "raw same row, one per tx"):
            report(Figure(f"{ours} [{synchronous}]", rate[ours], unit, f"sqlite3 {peer}", rate[peer], True, ">= 0.5"))
    report(
        Figure(
            f"aperture, batches of {batch} [{synchronous}]",
            rate["aperture, batches"],
            unit,
            "sqlite3 raw minimal, one per tx",
            rate["raw minimal, one per tx"],
            True,
            ">= 0.5",
        )
    )
    report(
        Figure(
            f"aperture, batches of {batch} [{synchronous}]",
            rate["aperture, batches"],
            unit,
            f"sqlite3 raw same row, batches of {batch}",
            rate["raw same row, batches"],
            True,
        )
    )
    raw_same.close()
    raw_min.close()
    services.close()


# --- 1 and 2. a log of a million events ---------------------------------------------------


def generate(services: Services, count: int) -> None:
    """Bulk path for the benchmark only: rows computed with the real leaf encoding, inserted with
    raw executemany in one transaction (what append would produce, a hundred times faster)."""
    start = services.audit.tree_size()
    base_ms = int(time.time() * 1000) - count
    connection = sqlite3.connect(services.settings.home / "aperture.db")
    with connection:

        def rows() -> Iterator[tuple[Any, ...]]:
            for i in range(count):
                event_id = new_id(base_ms + i)
                seconds, millis = divmod(base_ms + i, 1000)
                at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}000Z"
                resource_ = f"model:m{i % 97}/versions/{i}"
                yield (start + i, *stored_row(event_id, at, resource_, details(i)))

        connection.executemany(
            "INSERT INTO audit_events (leaf_index, event_id, occurred_at, actor, action, resource, details, "
            "leaf_hash, schema_version, commitments, withheld) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows(),
        )
    connection.close()


def peer_scan_and_hash(db_path: Path) -> float:
    """Read every row with raw sqlite3 and hash each once: no leaf encoding, no tree, no heads."""
    connection = sqlite3.connect(db_path)
    started = time.perf_counter()
    cursor = connection.execute(
        "SELECT leaf_index, event_id, occurred_at, actor, action, resource, details, leaf_hash, schema_version "
        "FROM audit_events ORDER BY leaf_index"
    )
    sha256 = hashlib.sha256
    while rows := cursor.fetchmany(20_000):
        for row in rows:
            sha256("\x1f".join((row[1], row[2], row[3], row[4], row[5], row[6])).encode()).digest()
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def naive_inclusion_proof(db_path: Path, index: int, size: int) -> float:
    """The proof without stored subtrees: read all leaf hashes, hash the tree in memory."""
    connection = sqlite3.connect(db_path)
    started = time.perf_counter()
    hashes = [
        row[0]
        for row in connection.execute(
            "SELECT leaf_hash FROM audit_events WHERE leaf_index < ? ORDER BY leaf_index", (size,)
        )
    ]
    inclusion_proof(hashes, index, size)
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def bench_million(run_dir: Path, count: int, rounds: int, proofs: int) -> None:
    print(f"\n== a log of {count:,} events on SQLite")
    services = new_instance(run_dir / "log")
    db_path = services.settings.home / "aperture.db"
    started = time.perf_counter()
    generate(services, count)
    info(f"generated {count:,} events with the bulk path in {time.perf_counter() - started:.1f} s (setup, not timed)")
    started = time.perf_counter()
    head = services.audit.issue_tree_head()
    info(
        f"first signed tree head over {head.tree_size:,} unsigned leaves (stores the subtree hashes): "
        f"{time.perf_counter() - started:.2f} s"
    )

    ours, peer = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        verified = services.audit.verify()
        ours.append(time.perf_counter() - started)
        assert verified.ok and verified.tree_size == head.tree_size, verified.problems
        peer.append(peer_scan_and_hash(db_path))
    report(
        Figure(
            f"verify {head.tree_size:,} events (AuditLog.verify, the `audit verify` code path)",
            median_of(ours),
            "s",
            "raw sqlite3 read + one SHA-256 per row",
            median_of(peer),
            False,
            "target < 10 s",
        )
    )
    env = dict(os.environ, APERTURE_HOME=str(services.settings.home))  # noqa: TID251 (the child reads its settings)
    started = time.perf_counter()
    cli = subprocess.run(
        [str(Path(sys.executable).parent / "aperture"), "audit", "verify", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    body = json.loads(cli.stdout)
    info(
        f"`aperture audit verify --json` as a process: exit {cli.returncode}, ok={body['ok']}, "
        f"{wall:.2f} s wall (in-command {body['elapsed_s']:.2f} s), peak RSS {child_rss:.0f} MiB"
    )

    rng = random.Random(6962)
    latencies = []
    for index in (rng.randrange(head.tree_size) for _ in range(proofs)):
        started = time.perf_counter()
        services.audit.inclusion_proof(index)
        latencies.append(time.perf_counter() - started)
    naive = [naive_inclusion_proof(db_path, rng.randrange(head.tree_size), head.tree_size) for _ in range(3)]
    report(
        Figure(
            f"inclusion proof at {head.tree_size:,} leaves, median of {proofs}",
            median_of(latencies) * 1000,
            "ms",
            "naive proof reading every leaf hash, median of 3",
            median_of(naive) * 1000,
            False,
            "target < 5 ms",
        )
    )
    latencies.sort()
    info(
        f"inclusion proof p95 {latencies[int(0.95 * len(latencies))] * 1000:.2f} ms, max {latencies[-1] * 1000:.2f} ms"
    )
    consistency = []
    for _ in range(min(proofs, 100)):
        first = rng.randrange(1, head.tree_size)
        started = time.perf_counter()
        services.audit.consistency_proof(first)
        consistency.append(time.perf_counter() - started)
    info(f"consistency proof to {head.tree_size:,} leaves: median {median_of(consistency) * 1000:.2f} ms")
    services.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="size of the log for verify and proofs")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per figure (medians are reported)")
    parser.add_argument("--proofs", type=int, default=300, help="inclusion proofs to time")
    parser.add_argument("--appends", type=int, default=5000, help="events per append round (NORMAL)")
    parser.add_argument("--appends-full", type=int, default=500, help="events per append round (FULL)")
    parser.add_argument("--batch", type=int, default=500, help="events per transaction in the batch figure")
    parser.add_argument("--skip-million", action="store_true", help="only the append figures")
    args = parser.parse_args()

    run_dir = WORK / f"audit-{os.getpid()}"
    run_dir.mkdir(parents=True)
    print(f"aperture audit benchmarks, python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}")
    try:
        bench_appends(run_dir, "NORMAL", args.appends, args.rounds, args.batch)
        bench_appends(run_dir, "FULL", args.appends_full, args.rounds, min(args.batch, args.appends_full))
        if not args.skip_million:
            bench_million(run_dir, args.events, args.rounds, args.proofs)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of this process (bulk generation included): {peak:.0f} MiB")


if __name__ == "__main__":
    main()
