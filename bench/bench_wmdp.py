"""WMDP-bio (all 1,273 items) on the bundled model: our engine beside lm-evaluation-harness, same run.

Each configuration runs in a fresh child process (so each peak RSS is its own), on the same items
and the same float32 weights, with torch's default threads:

  aperture     TransformersEngine.loglikelihoods (one forward per question, head at the scored
               position only, length-bucketed batches under --batch-tokens)
  lm-eval bN   lm_eval.simple_evaluate, model type hf, a local task with the `wmdp_bio` template
               reading the same items, batch size N (--lm-eval-batches, default 8 and 32; add 1 for
               the full picture, it takes the longest)

Printed per configuration: items/s, accuracy, seconds, achieved GFLOP/s (2 x parameters x scored
tokens / s), MFU against the machine's measured float32 matmul peak (a 4096^2 torch.mm, best of
several, measured in this run), and peak RSS (ru_maxrss of the child). Then the ratio of our
items/s to lm-eval's best, and the accuracy difference (target: within 0.5 points).

Run it alone on the machine:  flock /tmp/aperture-bench.lock .venv/bin/python bench/bench_wmdp.py
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work" / "wmdp"


def model_dir() -> Path:
    from aperture.ml import bundled

    return bundled.convert_to_safetensors(bundled.find_bundled_gguf(), WORK / "model-cache")


def load_items(limit: int | None) -> list:  # type: ignore[type-arg]
    from aperture.risk.datasets import DataDirectory
    from aperture.risk.domain import SUITES

    items, _ = DataDirectory().load_suite(SUITES["wmdp-bio"])
    return items[:limit] if limit else items


def matmul_peak() -> float:
    import torch

    size = 4096
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def child(engine: str, batch: int, limit: int | None, batch_tokens: int) -> dict[str, object]:
    from aperture.risk.domain import SUITES, multiple_choice_context, multiple_choice_continuations

    directory = model_dir()
    items = load_items(limit)
    header = SUITES["wmdp-bio"].header
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    tokens = sum(len(tokenizer(multiple_choice_context(header, i))["input_ids"]) for i in items)
    parameters = 0
    if engine == "aperture":
        from aperture.risk.engine import ChoiceRequest, TransformersEngine

        model = TransformersEngine(directory, batch_tokens=batch_tokens)
        parameters = model.parameters
        requests = [ChoiceRequest(multiple_choice_context(header, i), multiple_choice_continuations(i)) for i in items]
        model.loglikelihoods(requests[:4])  # warm-up, untimed
        started = time.perf_counter()
        scores = model.loglikelihoods(requests)
        seconds = time.perf_counter() - started
        correct = sum(max(range(4), key=lambda k: s[k]) == i.answer for s, i in zip(scores, items, strict=True))
        accuracy = correct / len(items)
    else:
        from aperture.testing.lm_eval_reference import run_lm_eval

        result = run_lm_eval(directory, items, header, WORK / f"lm-eval-b{batch}", batch_size=batch)
        seconds, accuracy = result.seconds, result.accuracy
    return {
        "engine": engine,
        "batch": batch,
        "items": len(items),
        "seconds": seconds,
        "accuracy": accuracy,
        "tokens": tokens,
        "parameters": parameters,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="Fewer items for a quick look (default: all 1,273).")
    parser.add_argument("--lm-eval-batches", default="8,32", help="lm-eval batch sizes, comma-separated.")
    parser.add_argument("--batch-tokens", type=int, default=2048, help="Our token budget per batch.")
    parser.add_argument("--child", nargs=2, metavar=("ENGINE", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.limit, args.batch_tokens)))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    model_dir()  # convert once, untimed
    peak = matmul_peak()
    print(f"float32 matmul peak (4096^2 torch.mm, best of 5): {peak / 1e9:.1f} GFLOP/s")
    configs = [("aperture", 0)] + [("lm-eval", int(b)) for b in args.lm_eval_batches.split(",") if b]
    results = []
    for engine, batch in configs:
        command = [sys.executable, __file__, "--child", engine, str(batch), "--batch-tokens", str(args.batch_tokens)]
        if args.limit:
            command += ["--limit", str(args.limit)]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        results.append(json.loads(output))
    parameters = results[0]["parameters"]  # the same weights for every configuration
    columns = ("items/s", "accuracy", "seconds", "GFLOP/s", "MFU", "peak RSS")
    print(f"{'configuration':<14} " + " ".join(f"{c:>9}" for c in columns))
    for r in results:
        flops = 2 * parameters * r["tokens"] / r["seconds"]
        label = "aperture" if r["engine"] == "aperture" else f"lm-eval b{r['batch']}"
        print(
            f"{label:<14} {r['items'] / r['seconds']:>8.2f} {100 * r['accuracy']:>8.2f}% {r['seconds']:>8.1f} "
            f"{flops / 1e9:>8.1f} {100 * flops / peak:>5.1f}% {r['peak_rss_mib']:>7.0f} MiB"
        )
    ours = results[0]
    best = max(results[1:], key=lambda r: r["items"] / r["seconds"])
    ratio = (ours["items"] / ours["seconds"]) / (best["items"] / best["seconds"])
    print(
        f"ratio: aperture {ours['items'] / ours['seconds']:.2f} items/s / lm-eval best (b{best['batch']}) "
        f"{best['items'] / best['seconds']:.2f} items/s = {ratio:.2f}x (target >= 3x)"
    )
    print(
        f"accuracy: aperture {100 * ours['accuracy']:.2f}% vs lm-eval {100 * best['accuracy']:.2f}% "
        f"(difference {100 * abs(ours['accuracy'] - best['accuracy']):.2f} points; target <= 0.5)"
    )


if __name__ == "__main__":
    main()
