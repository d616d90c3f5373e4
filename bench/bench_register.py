"""Registering (hash + store + sign) 2 GiB, beside sha256sum and OpenSSF model-signing, in the same run.

Two inputs, built under bench/.work/register/ and deleted afterwards:
  single   one 2 GiB safetensors file
  sharded  a Hugging Face directory of 8 x 256 MiB safetensors shards (+ index, config)

For each input, every tool runs --runs times, interleaved, each in a fresh child process, with the
inputs read back into the page cache and `sync` run (both untimed) just before it; medians are
printed with GB/s, peer time / our time (above 1: Aperture is faster) and the child's peak RSS
(GNU time %M). Every Aperture run registers into a fresh instance, so the store really writes and
fsyncs every byte (no deduplication).

  aperture API    RegistryService.register() timed inside the child (after imports, excluding init)
  aperture CLI    `aperture models register PATH --name N --version V`, wall time of the process
  sha256sum       coreutils, one process over the file(s)
  ms hash files   model_signing.hashing.Config().hash(path): file serialization (its default)
  ms hash shards  model_signing.hashing.Config().use_shard_serialization().hash(path) (1 GB shards)
  ms sign CLI     `model_signing sign key --private_key K PATH --signature S`, wall time of the process
  dd direct       `dd bs=8M oflag=direct conv=fsync` of the same bytes: the disk's write speed, which
                  bounds any registration that keeps a durable copy (model_signing keeps none)

Run it alone on the machine:  flock /tmp/aperture-bench.lock .venv/bin/python bench/bench_register.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work" / "register"  # our own folder: others keep files in bench/.work
BIN = Path(sys.executable).parent
GIB = 1024**3
MIB = 1024**2

API_CHILD = """
import sys, time
from pathlib import Path
from aperture.access.domain import SYSTEM
from aperture.bootstrap import build_services
from aperture.settings import load_settings
services = build_services(load_settings())
started = time.perf_counter()
result = services.registry.register(SYSTEM, Path(sys.argv[1]), "bench", "1")
print(time.perf_counter() - started)
services.close()
"""

MS_HASH_CHILD = """
import sys, time
from model_signing import hashing
config = hashing.Config()
if sys.argv[2] == "shards":
    config.use_shard_serialization()
started = time.perf_counter()
config.hash(sys.argv[1])
print(time.perf_counter() - started)
"""


def write_safetensors(path: Path, total: int, block: bytes, prefix: str = "") -> list[str]:
    """A valid safetensors file of `total` data bytes in F16 tensors of 64 MiB; returns the tensor names."""
    per = 64 * MIB
    names = [f"{prefix}layer.{i}.weight" for i in range(total // per)]
    header = {
        name: {"dtype": "F16", "shape": [per // 2], "data_offsets": [i * per, (i + 1) * per]}
        for i, name in enumerate(names)
    }
    body = json.dumps(header).encode()
    body += b" " * (-(8 + len(body)) % 8)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(body)) + body)
        for i in range(len(names)):
            shift = (i % 64) * MIB
            handle.write(block[shift:] + block[:shift])  # distinct content per tensor
    return names


def build_inputs() -> dict[str, Path]:
    WORK.mkdir(parents=True, exist_ok=True)
    block = os.urandom(64 * MIB)
    single = WORK / "single" / "model.safetensors"
    single.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(single, 2 * GIB, block)
    sharded = WORK / "sharded"
    sharded.mkdir(parents=True, exist_ok=True)
    weight_map: dict[str, str] = {}
    for shard in range(8):
        name = f"model-{shard + 1:05d}-of-00008.safetensors"
        shifted = block[(shard * 7 + 3) * MIB :] + block[: (shard * 7 + 3) * MIB]
        for tensor in write_safetensors(sharded / name, 256 * MIB, shifted, prefix=f"s{shard}."):
            weight_map[tensor] = name
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (sharded / "config.json").write_text(json.dumps({"architectures": ["BenchForCausalLM"], "model_type": "bench"}))
    subprocess.run(["sync"], check=True)
    return {"single 2 GiB file": single, "8 x 256 MiB shards": sharded}


def run_measured(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of a child, measured by GNU time around it.

    (wait4's ru_maxrss of a child forked from this process would include this process's own pages.)"""
    report = WORK / "time.out"
    timed = ["/usr/bin/time", "-o", str(report), "-f", "%e %M", *command]
    done = subprocess.run(timed, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    seconds, rss_kib = report.read_text().split()[-2:]
    return float(seconds), int(rss_kib) / 1024, done.stdout


def warm(path: Path) -> None:
    """Read the inputs back into the page cache (this VM's DAMON pages idle file pages out)."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    buffer = bytearray(8 * MIB)
    view = memoryview(buffer)
    for file in files:
        fd = os.open(file, os.O_RDONLY)
        try:
            while os.readv(fd, [view]):
                pass
        finally:
            os.close(fd)


def fresh_instance(run: int) -> dict[str, str]:
    home = WORK / f"home-{run}"
    shutil.rmtree(home, ignore_errors=True)
    env = dict(os.environ, APERTURE_HOME=str(home))  # noqa: TID251 (a script handing its environment to a child)
    subprocess.run([str(BIN / "aperture"), "init", "--json"], env=env, check=True, capture_output=True, cwd=ROOT)
    return env


def size_of(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench(path: Path, runs: int, key: Path) -> dict[str, list[tuple[float, float]]]:
    results: dict[str, list[tuple[float, float]]] = {}
    files = [str(path)] if path.is_file() else sorted(str(p) for p in path.iterdir() if p.is_file())
    copy_target = WORK / "dd.out"
    dd_script = 'for f in "$@"; do dd if="$f" of="$0" bs=8M oflag=direct conv=fsync status=none || exit 1; done'

    def timed(tool: str, command: list[str], env: dict[str, str] | None = None, *, inner: bool = False) -> None:
        warm(path)
        subprocess.run(["sync"], check=True)
        seconds, rss, out = run_measured(command, env)
        if inner:  # the child printed the time of the work itself, after its imports
            seconds = float(out.strip().splitlines()[-1])
        results.setdefault(tool, []).append((seconds, rss))

    for run in range(runs):
        env = fresh_instance(run)
        timed("aperture API (hash+store+sign+record)", [sys.executable, "-c", API_CHILD, str(path)], env, inner=True)
        shutil.rmtree(env["APERTURE_HOME"], ignore_errors=True)
        env = fresh_instance(run)
        register = [str(BIN / "aperture"), "models", "register", str(path), "--name", "bench", "--version", "1"]
        timed("aperture CLI end to end", register, env)
        shutil.rmtree(env["APERTURE_HOME"], ignore_errors=True)
        timed("sha256sum", ["sha256sum", *files])
        ms_hash = [sys.executable, "-c", MS_HASH_CHILD, str(path)]
        timed("model_signing hash API, files (its default)", [*ms_hash, "files"], inner=True)
        timed("model_signing hash API, 1 GB shards", [*ms_hash, "shards"], inner=True)
        signature = WORK / "ms.sig"
        sign = [str(BIN / "model_signing"), "sign", "key", "--private_key", str(key), str(path)]
        timed("model_signing sign key CLI end to end", [*sign, "--signature", str(signature)])
        signature.unlink(missing_ok=True)
        timed("dd oflag=direct copy (disk write, no hash)", ["sh", "-c", dd_script, str(copy_target), *files])
        copy_target.unlink(missing_ok=True)
    return results


def report(label: str, total: int, results: dict[str, list[tuple[float, float]]]) -> None:
    ours_api = statistics.median(s for s, _ in results["aperture API (hash+store+sign+record)"])
    ours_cli = statistics.median(s for s, _ in results["aperture CLI end to end"])
    print(f"\n== {label}: {total / 1e9:.3f} GB, {len(next(iter(results.values())))} runs, medians")
    print(f"{'tool':42} {'median s':>9} {'GB/s':>7} {'API/peer':>9} {'CLI/peer':>9} {'peak RSS':>9}  runs (s)")
    for tool, values in results.items():
        seconds = statistics.median(s for s, _ in values)
        rss = max(r for _, r in values)
        api_ratio = seconds / ours_api  # >1: we are faster
        cli_ratio = seconds / ours_cli
        runs = " ".join(f"{s:.2f}" for s, _ in values)
        print(
            f"{tool:42} {seconds:9.3f} {total / seconds / 1e9:7.2f} {api_ratio:9.2f} {cli_ratio:9.2f}"
            f" {rss:6.0f} MiB  {runs}"
        )
    print("ratios are peer time / our time: above 1.00 means Aperture is faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep bench/.work afterwards")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, aperture hash workers = CPU count")
    try:
        inputs = build_inputs()
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        key = WORK / "ms-key.pem"
        key.write_bytes(
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        for label, path in inputs.items():
            report(label, size_of(path), bench(path, args.runs, key))
    finally:
        if not args.keep:
            shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
