"""Gateway overhead: requests/s and p50/p99 latency against a trivial OpenAI-compatible backend,
(a) direct, (b) through `aperture gateway` with auth, rate limiting and metering on, (c) through
LiteLLM proxy configured the same way (a key, one model, rate limits), same run, same concurrency,
loopback only.

Every server is its own process with one worker (uvicorn; LiteLLM's own launcher); the load comes
from this process with a small keep-alive HTTP/1.1 client written on asyncio streams, so the client
costs far less than the servers it measures. Targets: our added p50 at concurrency 1 under 1 ms;
our throughput at concurrency 32 at least 10x LiteLLM's.

    flock /tmp/aperture-bench.lock .venv/bin/python bench/bench_gateway_overhead.py [--seconds 5]

LiteLLM runs from `.venv-litellm` (its proxy extra pins a `rich` older than our linters need, so it
gets a venv of its own: `python3 -m venv .venv-litellm && .venv-litellm/bin/pip install 'litellm[proxy]'`);
without it the comparison is direct vs gateway only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work" / "gateway-overhead"
PYTHON = sys.executable
APERTURE = str(Path(sys.executable).parent / "aperture")
LITELLM = ROOT / ".venv-litellm" / "bin" / "litellm"
BACKEND_MODEL = "backend-model"
LITELLM_KEY = "sk-bench-master-key"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(port: int, path: str, process: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                connection.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                if connection.recv(64).startswith(b"HTTP/1.1"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server on {port} did not start")


def peak_rss_mib(pid: int) -> float:
    """VmHWM of a process and its children (LiteLLM's launcher runs its worker as a child)."""
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for one in pids:
        status = Path(f"/proc/{one}/status")
        if status.exists():
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
    return total


# --- the load client -----------------------------------------------------------------------------


def request_bytes(port: int, path: str, body: dict[str, Any], key: str | None) -> bytes:
    payload = json.dumps(body).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    if key:
        head += f"Authorization: Bearer {key}\r\n"
    head += f"Content-Length: {len(payload)}\r\n\r\n"
    return head.encode() + payload


async def one_connection(
    port: int, raw: bytes, deadline: float, latencies: list[float], limit: int | None, errors: list[str]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline and (limit is None or len(latencies) < limit):
            started = time.perf_counter()
            writer.write(raw)
            status = await reader.readline()
            length = -1
            chunked = False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value.strip())
                elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
            if chunked:
                while True:
                    size = int((await reader.readline()).strip(), 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            else:
                await reader.readexactly(length)
            if not status.startswith(b"HTTP/1.1 200"):
                errors.append(status.decode().strip())
                continue
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


def load(port: int, raw: bytes, concurrency: int, seconds: float, limit: int | None = None) -> dict[str, Any]:
    async def run() -> tuple[list[float], list[str], float]:
        warm: list[float] = []
        await asyncio.gather(
            *(one_connection(port, raw, time.perf_counter() + 0.5, warm, None, []) for _ in range(concurrency))
        )
        latencies: list[float] = []
        errors: list[str] = []
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(
            *(one_connection(port, raw, deadline, latencies, limit, errors) for _ in range(concurrency))
        )
        return latencies, errors, time.perf_counter() - started

    latencies, errors, elapsed = asyncio.run(run())
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


# --- the three servers -----------------------------------------------------------------------------


def start_backend(port: int) -> subprocess.Popen[bytes]:
    command = [
        PYTHON, "-m", "uvicorn", "--factory", "aperture.testing.openai_backend:create_backend",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT)
    wait_ready(port, "/v1/models", process)
    return process


def prepare_instance(home: Path, backend_port: int) -> tuple[str, str]:
    """An instance with a small model version (the bundled tokenizer) bound to the backend, a key
    with rate limits and a monthly quota far above what the run uses, and a price."""
    from aperture.access.domain import (
        SYSTEM,
        Organisation,
        OrganisationKind,
        RuleOfLaw,
        SecurityLevel,
        State,
        StateKind,
    )
    from aperture.bootstrap import build_services, init_instance
    from aperture.gateway.domain import BackendKind, Limits, ScopeKind
    from aperture.ml import bundled
    from aperture.release.domain import Tier
    from aperture.settings import Settings

    settings = Settings(home=home, log_level="WARNING")
    services = build_services(settings)
    init_instance(services)
    source = bundled.convert_to_safetensors(bundled.find_bundled_gguf(), WORK.parent / "model-cache")
    model_dir = home.parent / "tokenizer-model"
    model_dir.mkdir(exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json"):
        if (source / name).exists():
            shutil.copy(source / name, model_dir / name)
    _tiny_weights(model_dir)
    version = services.registry.register(SYSTEM, model_dir, "bench-model", "1.0", licence="Apache-2.0").version
    services.release.take_effect(version, Tier.HOSTED, "bench", actor="bench")
    services.gateway.bind(
        SYSTEM, version.reference, BackendKind.REMOTE, url=f"http://127.0.0.1:{backend_port}/v1",
        remote_model=BACKEND_MODEL, timeout_s=30,
    )  # fmt: skip
    services.access.save_state(
        SYSTEM, State("FR", "France", StateKind.MEMBER, True, SecurityLevel.SL4, RuleOfLaw.ADEQUATE)
    )
    services.access.save_organisation(SYSTEM, Organisation("bench", "Bench", OrganisationKind.COMPANY, "FR"))
    issued = services.gateway.issue_key(SYSTEM, organisation="bench", name="bench")
    limits = Limits(requests_per_minute=100_000_000, tokens_per_minute=10_000_000_000, monthly_tokens=10**15)
    services.gateway.set_limits(SYSTEM, ScopeKind.KEY, issued.key.key_id, limits)
    services.gateway.set_limits(SYSTEM, ScopeKind.ORGANISATION, "bench", limits)
    services.gateway.set_price(SYSTEM, version.reference, 0.1, 0.3)
    services.close()
    return issued.text, version.reference


def _tiny_weights(directory: Path) -> None:
    """Two tiny layers so the version registers as a model (the gateway only reads its tokenizer)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))


def child_env(**extra: str) -> dict[str, str]:
    """This script's environment handed to a child process, with `extra` on top."""
    return dict(os.environ, **extra)  # noqa: TID251 (a script handing its environment to a child)


def start_gateway(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = child_env(APERTURE_HOME=str(home), APERTURE_LOG_LEVEL="WARNING")
    process = subprocess.Popen([APERTURE, "gateway", "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    wait_ready(port, "/healthz", process)
    return process


def start_litellm(port: int, backend_port: int) -> subprocess.Popen[bytes] | None:
    if not LITELLM.exists():
        return None
    config = WORK / "litellm.yaml"
    # The same as ours: one model, a key checked on every request, rate limits far above the load.
    # Without a database LiteLLM has no virtual keys: the master key is the key.
    config.write_text(
        "model_list:\n"
        "  - model_name: bench-model\n"
        "    litellm_params:\n"
        f"      model: openai/{BACKEND_MODEL}\n"
        f"      api_base: http://127.0.0.1:{backend_port}/v1\n"
        "      api_key: none\n"
        "      rpm: 100000000\n"
        "      tpm: 10000000000\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
    )
    env = child_env(LITELLM_LOG="ERROR", LITELLM_TELEMETRY="False", NO_DOCS="True")
    process = subprocess.Popen(
        [str(LITELLM), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
        cwd=WORK,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_ready(port, "/health/liveliness", process, timeout_s=180)
    return process


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per concurrency level")
    parser.add_argument("--sequential", type=int, default=2000, help="requests at concurrency 1")
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    backend_port, gateway_port, litellm_port = free_port(), free_port(), free_port()
    processes: dict[str, subprocess.Popen[bytes] | None] = {}
    try:
        processes["backend"] = start_backend(backend_port)
        key, model = prepare_instance(WORK / "home", backend_port)
        processes["gateway"] = start_gateway(WORK / "home", gateway_port)
        processes["litellm"] = start_litellm(litellm_port, backend_port)
        messages = [{"role": "user", "content": "What is the capital of France?"}]
        targets = {
            "direct": (backend_port, {"model": BACKEND_MODEL, "messages": messages, "max_tokens": 16}, None),
            "aperture gateway": (gateway_port, {"model": model, "messages": messages, "max_tokens": 16}, key),
        }
        if processes["litellm"] is not None:
            body = {"model": "bench-model", "messages": messages, "max_tokens": 16}
            targets["LiteLLM proxy"] = (litellm_port, body, LITELLM_KEY)
        results: dict[tuple[str, int], dict[str, Any]] = {}
        for concurrency in (1, 32):
            for name, (port, body, bearer) in targets.items():
                raw = request_bytes(port, "/v1/chat/completions", body, bearer)
                limit = args.sequential if concurrency == 1 else None
                seconds = args.seconds * (4 if concurrency == 1 else 1)
                results[(name, concurrency)] = found = load(port, raw, concurrency, seconds, limit)
                print(
                    f"c={concurrency:<3} {name:<17} {found['rps']:>9.0f} req/s  p50 {found['p50_ms']:7.2f} ms  "
                    f"p99 {found['p99_ms']:7.2f} ms  ({found['requests']} ok, {found['errors']} errors"
                    + (f": {found['first_error']}" if found["errors"] else "")
                    + ")",
                    flush=True,
                )
        rss = {name: peak_rss_mib(p.pid) for name, p in processes.items() if p is not None}
        print("\npeak RSS: " + ", ".join(f"{name} {value:.0f} MiB" for name, value in rss.items()))
        direct1, ours1 = results[("direct", 1)], results[("aperture gateway", 1)]
        print(f"added p50 at concurrency 1: {ours1['p50_ms'] - direct1['p50_ms']:.3f} ms (target < 1 ms)")
        ours32 = results[("aperture gateway", 32)]
        if ("LiteLLM proxy", 32) in results:
            theirs1, theirs32 = results[("LiteLLM proxy", 1)], results[("LiteLLM proxy", 32)]
            print(f"LiteLLM added p50 at concurrency 1: {theirs1['p50_ms'] - direct1['p50_ms']:.3f} ms")
            print(
                f"throughput at concurrency 32: ours {ours32['rps']:.0f} req/s, LiteLLM {theirs32['rps']:.0f} req/s: "
                f"{ours32['rps'] / theirs32['rps']:.1f}x (target >= 10x)"
            )
        else:
            print("LiteLLM is not installed in .venv-litellm: compared with direct only")
        print(f"throughput at concurrency 32 vs direct: {ours32['rps'] / results[('direct', 32)]['rps']:.2f}x")
        stop(processes.pop("gateway"))  # a clean stop flushes the write-ahead log into the database
        metered = subprocess.run(
            [APERTURE, "gateway", "usage", "--format", "json"],
            env=child_env(APERTURE_HOME=str(WORK / "home")),
            capture_output=True,
            text=True,
            check=True,
        )
        served = sum(r["requests"] for r in json.loads(metered.stdout))
        answered = sum(results[("aperture gateway", c)]["requests"] for c in (1, 32))
        print(f"metered requests after the gateway stopped: {served} (measured phases: {answered}, plus warm-ups)")
    finally:
        for process in processes.values():
            stop(process)
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
