"""Authorization decisions/s through AccessService.decide with 10,000 entities and the shipped
policies, beside raw cedarpy on the same requests with the same pre-parsed policy set and entities.

    .venv/bin/python bench/bench_authz.py [--runs 5] [--requests 20000]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import cedarpy

from aperture.access import store
from aperture.access.domain import (
    SYSTEM,
    Action,
    AssetKind,
    AssetRef,
    Caller,
    Classification,
    PrincipalKind,
    Role,
    SecurityLevel,
    Vetting,
    decision_context,
)
from aperture.bootstrap import build_services, init_instance
from aperture.settings import Settings


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-authz-", dir=Path(__file__).parent))
    try:
        services = build_services(Settings(home=work / "home"))
        init_instance(services)
        access = services.access
        for programme in ("p0", "p1", "p2", "p3"):
            access.add_programme(SYSTEM, programme, programme)
        now = services.clock.now()
        people = 6000
        assets = 10000 - people
        with services.database.transaction() as connection:  # bulk load: 10,000 entities
            from aperture.access.domain import Principal

            for i in range(people):
                store.insert_principal(
                    connection,
                    Principal(
                        f"u{i}",
                        PrincipalKind.PERSON,
                        f"u{i}",
                        None,
                        SecurityLevel(1 + i % 5),
                        Vetting.STRATEGIC,
                        (Role.RESEARCHER,),
                        (f"p{i % 4}",),
                        now,
                    ),
                )
            for i in range(assets):
                level = SecurityLevel(1 + i % 5)
                store.upsert_classification(
                    connection,
                    Classification(
                        AssetRef(AssetKind.MODEL_VERSION, f"a{i}"),
                        f"m{i}",
                        level,
                        f"p{i % 4}" if level >= 3 else None,
                        False,
                        now,
                        "bench",
                    ),
                )
            store.bump_generation(connection)
        access._generation = -1
        entities, _, _ = access._entity_store()
        requests = []
        for n in range(args.requests):
            caller = Caller(f"u{(n * 7919) % people}", (Role.RESEARCHER,), "k")
            asset = AssetRef(AssetKind.MODEL_VERSION, f"a{(n * 104729) % assets}")
            action = (Action.VIEW, Action.DOWNLOAD)[n % 2]
            requests.append((caller, action, asset))
        raw_requests = [
            access.engine.request(c.principal, a, "Asset", r.uid, decision_context(c)) for c, a, r in requests
        ]
        policies = access.engine.policies
        ours, raw = [], []
        for _ in range(args.runs):
            started = time.perf_counter()
            allowed_raw = sum(cedarpy.is_authorized(r, policies, entities).allowed for r in raw_requests)
            raw.append(len(raw_requests) / (time.perf_counter() - started))
            started = time.perf_counter()
            allowed_ours = sum(access.decide(c, a, r).allowed for c, a, r in requests)
            ours.append(len(requests) / (time.perf_counter() - started))
            assert allowed_ours == allowed_raw
        ours_m, raw_m = statistics.median(ours), statistics.median(raw)
        print(
            f"entities: {people} people + {assets} assets + programmes; {len(requests)} requests, "
            f"{allowed_ours} allowed; median of {args.runs} runs"
        )
        print(f"AccessService.decide:            {ours_m:10,.0f} decisions/s")
        print(f"raw cedarpy.is_authorized:       {raw_m:10,.0f} decisions/s (same PolicySet and Entities handles)")
        print(f"ratio: ours/raw = {ours_m / raw_m:.2f}  (overhead {100 * (1 - ours_m / raw_m):.0f}%, target < 30%)")
        print(f"peak RSS: {peak_rss_mib():.0f} MiB")
        services.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
