"""The embedded engine: generated tokens/s for 1, 8 and 32 concurrent chat requests to `aperture
gateway` serving the bundled model (SmolLM2-135M-Instruct), beside `transformers` `generate` called
directly one request at a time on the same prompts (greedy, the same token bound: the same tokens).

Target: aggregate throughput at 32 concurrent requests at least 4x the sequential baseline.

    flock /tmp/aperture-bench.lock .venv/bin/python bench/bench_gateway_engine.py [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gateway_overhead import APERTURE, ROOT, child_env, free_port, peak_rss_mib, stop, wait_ready

WORK = ROOT / "bench" / ".work" / "gateway-engine"
CACHE = ROOT / "bench" / ".work" / "model-cache"
TOPICS = (
    "the sea", "bread", "mountains", "a library", "rain", "bicycles", "the moon", "coffee", "a city at night",
    "winter", "music", "trees", "a train journey", "the desert", "friendship", "a garden", "clocks", "snow",
    "a river", "bees", "paper", "a market", "lighthouses", "autumn", "chess", "a bridge", "stars", "tea",
    "a museum", "wind", "islands", "a kitchen",
)  # fmt: skip


def messages(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Write two sentences about {TOPICS[i % len(TOPICS)]}."}]


def prepare(home: Path) -> tuple[str, str, Path]:
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
    from aperture.gateway.domain import BackendKind
    from aperture.ml import bundled
    from aperture.release.domain import Tier
    from aperture.settings import Settings

    services = build_services(Settings(home=home, model_cache=CACHE, log_level="WARNING"))
    init_instance(services)
    version = services.registry.import_bundled().version
    services.release.take_effect(version, Tier.HOSTED, "bench", actor="bench")
    services.gateway.bind(SYSTEM, version.reference, BackendKind.EMBEDDED)
    services.access.save_state(
        SYSTEM, State("FR", "France", StateKind.MEMBER, True, SecurityLevel.SL4, RuleOfLaw.ADEQUATE)
    )
    services.access.save_organisation(SYSTEM, Organisation("bench", "Bench", OrganisationKind.COMPANY, "FR"))
    key = services.gateway.issue_key(SYSTEM, organisation="bench", name="bench").text
    services.close()
    return key, version.reference, bundled.convert_to_safetensors(bundled.find_bundled_gguf(), CACHE)


async def concurrent(port: int, key: str, model: str, count: int, max_tokens: int) -> tuple[int, float, list[str]]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}/v1", headers={"Authorization": f"Bearer {key}"}, timeout=600
    ) as client:

        async def one(i: int) -> dict[str, Any]:
            body = {"model": model, "messages": messages(i), "max_tokens": max_tokens, "temperature": 0}
            response = await client.post("/chat/completions", json=body)
            response.raise_for_status()
            data: dict[str, Any] = response.json()
            return data

        started = time.perf_counter()
        answers = await asyncio.gather(*(one(i) for i in range(count)))
        elapsed = time.perf_counter() - started
    tokens = sum(int(a["usage"]["completion_tokens"]) for a in answers)
    return tokens, elapsed, [str(a["choices"][0]["message"]["content"]) for a in answers]


def sequential_generate(model_dir: Path, count: int, max_tokens: int) -> tuple[int, float, list[str]]:
    """The peer: transformers' `generate`, one request at a time, greedy."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    eos = tokenizer.eos_token_id
    tokens = 0
    texts = []
    with torch.inference_mode():
        prompt = tokenizer.apply_chat_template(messages(99), add_generation_prompt=True, return_tensors="pt")
        model.generate(**_inputs(prompt), max_new_tokens=4, do_sample=False)  # warm-up
        started = time.perf_counter()
        for i in range(count):
            prompt = tokenizer.apply_chat_template(messages(i), add_generation_prompt=True, return_tensors="pt")
            inputs = _inputs(prompt)
            output = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False, pad_token_id=eos)
            new = output[0, inputs["input_ids"].shape[1] :].tolist()
            tokens += len(new)
            texts.append(tokenizer.decode([t for t in new if t != eos], skip_special_tokens=True))
        elapsed = time.perf_counter() - started
    return tokens, elapsed, texts


def _inputs(prompt: Any) -> dict[str, Any]:
    ids = prompt["input_ids"] if isinstance(prompt, dict) or hasattr(prompt, "keys") else prompt
    import torch

    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--baseline-requests", type=int, default=8, help="requests in the sequential baseline")
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    gateway: subprocess.Popen[bytes] | None = None
    try:
        key, model, model_dir = prepare(WORK / "home")
        port = free_port()
        env = child_env(APERTURE_HOME=str(WORK / "home"), APERTURE_MODEL_CACHE=str(CACHE), APERTURE_LOG_LEVEL="WARNING")
        gateway = subprocess.Popen([APERTURE, "gateway", "--port", str(port)], cwd=ROOT, env=env)
        wait_ready(port, "/healthz", gateway, timeout_s=300)
        asyncio.run(concurrent(port, key, model, 2, 8))  # warm-up
        results: dict[int, tuple[int, float, list[str]]] = {}
        for count in (1, 8, 32):
            results[count] = asyncio.run(concurrent(port, key, model, count, args.max_tokens))
            tokens, elapsed, _ = results[count]
            rate = tokens / elapsed
            print(f"gateway, {count:>2} concurrent: {tokens:>5} tokens in {elapsed:6.2f} s = {rate:7.1f} tokens/s")
        gateway_rss = peak_rss_mib(gateway.pid)
        stop(gateway)
        gateway = None
        base_tokens, base_elapsed, base_texts = sequential_generate(model_dir, args.baseline_requests, args.max_tokens)
        baseline = base_tokens / base_elapsed
        print(
            f"transformers generate, one at a time ({args.baseline_requests} requests): {base_tokens} tokens in "
            f"{base_elapsed:.2f} s = {baseline:.1f} tokens/s"
        )
        same = sum(a == b for a, b in zip(results[32][2], base_texts, strict=False))
        print(f"identical answers (first {len(base_texts)} prompts, greedy): {same} of {len(base_texts)}")
        for count in (1, 8, 32):
            tokens, elapsed, _ = results[count]
            print(f"ratio at {count:>2} concurrent: {tokens / elapsed / baseline:.2f}x the sequential baseline")
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS: gateway {gateway_rss:.0f} MiB, baseline process {own:.0f} MiB (model file 513 MiB float32)")
        print(json.dumps({"target_32_vs_sequential": round(results[32][0] / results[32][1] / baseline, 2)}))
    finally:
        stop(gateway)
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
