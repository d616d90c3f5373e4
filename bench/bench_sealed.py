"""Sealed write and read of a 1 GiB artifact beside a plain file copy, with peak RSS.

Write: read + SHA-256 + AES-256-GCM + write + fsync (VaultService.seal_files) vs read + write +
fsync (a plain copy: Python's shutil.copyfileobj, and coreutils `cp`, which copies in the kernel).
Read: decrypt + verify to a new file + fsync (copy_out_sealed) vs the same plain copies. Each
step runs in a fresh child process so peak RSS belongs to that step alone.

Each step's input is first put in the same cache state, so no step reads from memory what
another reads from disk: `cold` drops the input from the page cache (posix_fadvise DONTNEED,
after an fsync: weights at rest, the usual case), `warm` reads it once before timing.

    .venv/bin/python bench/bench_sealed.py [--runs 3] [--size-mib 1024] [--cache cold|warm|both]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, os, resource, sys, time, shutil
from pathlib import Path
mode, work, src, cache = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
def prepare(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        if cache == "cold":
            os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        else:
            while os.read(fd, 8 << 20): pass
    finally:
        os.close(fd)
if mode != "read":
    prepare(src)
if mode == "cp":
    import subprocess
    dst = work / "copy.bin"
    started = time.perf_counter()
    subprocess.run(["cp", "--reflink=never", str(src), str(dst)], check=True)
    fd = os.open(dst, os.O_RDONLY); os.fsync(fd); os.close(fd)
    elapsed = time.perf_counter() - started
    dst.unlink()
    print(json.dumps({"s": elapsed, "rss": rss()})); sys.exit()
if mode == "copy":
    dst = work / "copy.bin"
    started = time.perf_counter()
    with open(src, "rb") as a, open(dst, "wb") as b:
        shutil.copyfileobj(a, b, 8 * 1024 * 1024); b.flush(); os.fsync(b.fileno())
    elapsed = time.perf_counter() - started
    dst.unlink()
    print(json.dumps({"s": elapsed, "rss": rss()})); sys.exit()
from aperture.bootstrap import build_services
from aperture.settings import Settings
from aperture.vault.artifacts import SourceFile
from aperture.vault.service import Staging
services = build_services(Settings(home=work / "home"))
if mode == "write":
    info = src.stat()
    source = SourceFile(src, info.st_size, info.st_dev, info.st_ino, info.st_mtime_ns, "big.bin")
    started = time.perf_counter()
    (blob,) = services.vault.seal_files(Staging(), [source])
    elapsed = time.perf_counter() - started
    meta = {"artifact_id": blob.artifact_id, "sha256": blob.digest, "size": blob.size}
    (work / "sealed.json").write_text(json.dumps(meta))
else:
    from aperture.vault.store import SealedBlobRow
    meta = json.loads((work / "sealed.json").read_text())
    shares = json.loads((work / "shares.json").read_text())
    for custodian, share in shares[:2]:
        services.vault.present_share(custodian, share)
    keyring = services.vault.keyring()
    row = SealedBlobRow(meta["artifact_id"], "bench", meta["sha256"], meta["size"], keyring.id)
    prepare(services.vault.sealed_path(row.artifact_id))
    dst = work / "plain.bin"
    started = time.perf_counter()
    services.vault.copy_out_sealed(row, dst)
    elapsed = time.perf_counter() - started
    dst.unlink()
print(json.dumps({"s": elapsed, "rss": rss()}))
"""


def run(mode: str, work: Path, source: Path, cache: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(work), str(source), cache], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(work: Path, source: Path, cache: str, runs: int, size_mib: int) -> None:
    results: dict[str, list[dict[str, float]]] = {"copy": [], "cp": [], "write": [], "read": []}
    for _ in range(runs):
        for mode in ("copy", "cp", "write", "read"):
            results[mode].append(run(mode, work, source, cache))
            if mode == "read":
                meta = json.loads((work / "sealed.json").read_text())
                path = work / "home" / "sealed" / meta["artifact_id"][:2] / meta["artifact_id"]
                path.unlink()
    gib = size_mib / 1024
    med = {m: statistics.median(r["s"] for r in rs) for m, rs in results.items()}
    rss = {m: max(r["rss"] for r in rs) for m, rs in results.items()}
    print(f"{size_mib} MiB, {cache} input, median of {runs} runs (fresh process each, fsync included)")
    for mode, label in (
        ("copy", "plain copy (read+write+fsync)"),
        ("cp", "cp --reflink=never + fsync"),
        ("write", "sealed write (hash+encrypt)"),
        ("read", "sealed read (decrypt+verify)"),
    ):
        print(f"{label:34s} {med[mode]:6.2f} s  {gib / med[mode]:5.2f} GiB/s  peak RSS {rss[mode]:5.0f} MiB")
    for peer in ("copy", "cp"):
        print(
            f"ratio write/{peer} = {med['write'] / med[peer]:.2f}x, "
            f"read/{peer} = {med['read'] / med[peer]:.2f}x (target <= 1.5x)"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--cache", choices=("cold", "warm", "both"), default="both")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-sealed-", dir=Path(__file__).parent))
    try:
        from aperture.access.domain import SYSTEM, Role
        from aperture.bootstrap import build_services, init_instance
        from aperture.settings import Settings

        services = build_services(Settings(home=work / "home"))
        init_instance(services)
        for name in ("carol", "dave"):
            services.access.add_principal(SYSTEM, name, roles=(Role.KEY_CUSTODIAN,))
        shares = services.security.init_seal(SYSTEM, ["carol", "dave"], 2)
        (work / "shares.json").write_text(json.dumps(shares))
        services.close()
        source = work / "big.bin"
        with open(source, "wb") as handle:
            block = os.urandom(16 * 1024 * 1024)
            for _ in range(args.size_mib // 16):
                handle.write(block)
        for cache in ("cold", "warm") if args.cache == "both" else (args.cache,):
            measure(work, source, cache, args.runs, args.size_mib)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
