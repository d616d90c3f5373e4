"""Tracing a leaked copy of the bundled model against 1,000 issued keys: target under 60 s.

The suspect is licensee 417's marked copy (written as the service writes it). Timed in a fresh
child process: open the suspect, load the original, register and take the residual, screen all
1,000 issued keys on 2 % of the coordinates, confirm the best candidates on every coordinate, and
score 200 never-issued keys for the empirical null (what `aperture licensing trace` does, less
the database and the signature). The peer is the plain method: every key on every coordinate,
timed on 5 keys and scaled to 1,000 (the same code, `marking.zscore` on the full residual).

    .venv/bin/python bench/bench_trace.py [--keys 1000] [--null 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from licensing_support import WORK, bundled_dir

CHILD = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[5])
from licensing_support import *
from aperture.licensing import marking
work, keys, nulls, guilty = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
master = bytes.fromhex((work / "master").read_text())
seeds = seeds_for(master, keys)
started = time.perf_counter()
arrays, metadata, buffer = load_original(bundled_dir())
traced = residual_of(work / "leak.safetensors", arrays)
del arrays, buffer
scored = marking.score_keys(traced.residual, seeds, screen_fraction=0.02, confirm_top=8)
screen = marking.screen_subset(traced.residual, 0.02)
null = marking.empirical_null(screen, b"bench-null", nulls)
elapsed = time.perf_counter() - started
accused = [s.key for s in scored if s.z is not None and s.z >= 6]
innocent = max((s.z if s.z is not None else s.screen_z) for s in scored if s.key != guilty)
t = time.perf_counter()
for key in list(seeds)[:5]:
    marking.zscore(traced.residual, seeds[key])
peer = (time.perf_counter() - t) / 5 * keys
from scipy.stats import kstest
print(json.dumps({"s": elapsed, "register_s": traced.seconds, "peer_s": peer, "accused": accused,
    "true_z": next(s.z for s in scored if s.key == guilty), "max_innocent": innocent,
    "null_max": max(null), "null_ks_p": float(kstest(null, "norm").pvalue),
    "confirmed": sum(s.z is not None for s in scored),
    "rss": rss_mib()}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--null", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from licensing_support import load_original, new_master, seeds_for, write_marked

    work = WORK / "trace"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    guilty = "licensee-0417"
    try:
        master = new_master()
        (work / "master").write_text(master.hex())
        arrays, metadata, _buffer = load_original(bundled_dir())
        write_marked(arrays, metadata, seeds_for(master, args.keys)[guilty], work / "leak.safetensors")
        del arrays, metadata, _buffer
        rows = []
        for _ in range(args.runs):
            done = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    str(work),
                    str(args.keys),
                    str(args.null),
                    guilty,
                    str(Path(__file__).resolve().parent),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ours = statistics.median(r["s"] for r in rows)
    peer = statistics.median(r["peer_s"] for r in rows)
    first = rows[0]
    print(f"{args.keys} issued keys, {args.null} null keys, {args.runs} runs (medians)")
    print(
        f"trace: {ours:.1f} s (load + register + residual {statistics.median(r['register_s'] for r in rows):.1f} s), "
        f"peak RSS {max(r['rss'] for r in rows):.0f} MiB; {first['confirmed']} keys confirmed on every coordinate"
    )
    print(f"peer (every key on every coordinate, from 5 keys): {peer:.0f} s; ratio ours / peer: {ours / peer:.3f}")
    print(
        f"accused: {first['accused']} (true z = {first['true_z']:.0f}); max innocent z = {first['max_innocent']:.2f}; "
        f"null max = {first['null_max']:.2f}, KS p = {first['null_ks_p']:.2f}"
    )
    print(f"target: under 60 s -> {'met' if ours < 60 else 'NOT met'}")
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
