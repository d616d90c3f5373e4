"""Gateway memory under a long load: `aperture gateway` (auth, rate limits, metering on) in front of
the trivial OpenAI-compatible backend, driven at a fixed concurrency for --minutes (default 10).

Every --every seconds the script records the gateway's and the bare backend's resident memory
(VmRSS), the requests/s and the p50 of that slice. Target: the gateway's memory stays flat: its RSS
in the last minute within 5 % of its RSS after the first minute (the warm-up: caches, the
tokenizer, the connection pool), and no steady growth (the slope of RSS against time over the
minutes after the first, in MiB per minute, printed beside the bare backend's as the peer).
After the gateway stops, every answered request must be in the metering tables.

    flock /tmp/aperture-bench.lock .venv/bin/python bench/bench_gateway_soak.py [--minutes 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gateway_overhead as overhead

WORK = overhead.ROOT / "bench" / ".work" / "gateway-soak"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"process {pid} has no VmRSS")


def slope(times: list[float], values: list[float]) -> float:
    """Least-squares slope of values against times (per minute)."""
    mean_t, mean_v = statistics.fmean(times), statistics.fmean(values)
    num = sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values, strict=True))
    den = sum((t - mean_t) ** 2 for t in times)
    return num / den if den else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=10.0, help="seconds per sample")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    backend_port, gateway_port = overhead.free_port(), overhead.free_port()
    backend = gateway = None
    samples: list[dict[str, float]] = []
    try:
        backend = overhead.start_backend(backend_port)
        key, model = overhead.prepare_instance(WORK / "home", backend_port)
        gateway = overhead.start_gateway(WORK / "home", gateway_port)
        messages = [{"role": "user", "content": "What is the capital of France?"}]
        raw = overhead.request_bytes(
            gateway_port, "/v1/chat/completions", {"model": model, "messages": messages, "max_tokens": 16}, key
        )
        started = time.perf_counter()
        answered = errors = 0
        while time.perf_counter() - started < args.minutes * 60:
            found = overhead.load(gateway_port, raw, args.concurrency, args.every)
            answered += found["requests"]
            errors += found["errors"]
            sample = {
                "minute": (time.perf_counter() - started) / 60,
                "rps": found["rps"],
                "p50_ms": found["p50_ms"],
                "gateway_rss_mib": rss_mib(gateway.pid),
                "backend_rss_mib": rss_mib(backend.pid),
            }
            samples.append(sample)
            print(
                f"{sample['minute']:5.1f} min  {sample['rps']:7.0f} req/s  p50 {sample['p50_ms']:6.2f} ms  "
                f"gateway {sample['gateway_rss_mib']:6.1f} MiB  backend {sample['backend_rss_mib']:6.1f} MiB",
                flush=True,
            )
        overhead.stop(gateway)  # a clean stop flushes the write-ahead log into the database
        gateway = None
        metered = subprocess.run(
            [overhead.APERTURE, "gateway", "usage", "--format", "json"],
            env=overhead.child_env(APERTURE_HOME=str(WORK / "home")),
            capture_output=True,
            text=True,
            check=True,
        )
        served = sum(r["requests"] for r in json.loads(metered.stdout))
    finally:
        overhead.stop(gateway)
        overhead.stop(backend)
        shutil.rmtree(WORK, ignore_errors=True)
    warm = [s for s in samples if s["minute"] >= 1.0]
    first = min(warm, key=lambda s: s["minute"])
    last_minute = [s for s in samples if s["minute"] >= samples[-1]["minute"] - 1.0]
    end = statistics.median(s["gateway_rss_mib"] for s in last_minute)
    change = (end - first["gateway_rss_mib"]) / first["gateway_rss_mib"]
    ours = slope([s["minute"] for s in warm], [s["gateway_rss_mib"] for s in warm])
    peer = slope([s["minute"] for s in warm], [s["backend_rss_mib"] for s in warm])
    median_rps = statistics.median(s["rps"] for s in samples)
    print(f"\nrequests answered {answered:,} ({errors} errors), median {median_rps:.0f} req/s")
    print(
        f"gateway RSS after 1 min {first['gateway_rss_mib']:.1f} MiB, last minute {end:.1f} MiB: "
        f"{100 * change:+.1f} % (target within 5 %), peak {max(s['gateway_rss_mib'] for s in samples):.1f} MiB"
    )
    print(f"RSS slope after the first minute: gateway {ours:+.2f} MiB/min, bare backend {peer:+.2f} MiB/min (peer)")
    print(f"metered requests after the gateway stopped: {served:,} (answered {answered:,} plus warm-ups)")


if __name__ == "__main__":
    main()
