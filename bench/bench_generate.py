"""Refusal-suite generation on the bundled model: batched engine beside one-prompt-at-a-time `generate`.

The same StrongREJECT prompts (chat template, greedy, --max-new-tokens) are answered by:

  generate x1     transformers `model.generate` called once per prompt (the peer)
  aperture bN     TransformersEngine.generate on batches of N prompts (left-padded, one call per batch)

Printed per configuration: generated tokens/s (tokens actually produced, up to each answer's end),
seconds, MFU against the measured float32 matmul peak (2 x parameters x generated tokens / s over
the peak: decoding is memory-bound, so expect low figures), and the process's peak RSS so far.
Then the ratio of the best batch size to the peer (target: at least 4x).

Run it alone on the machine:  flock /tmp/aperture-bench.lock .venv/bin/python bench/bench_generate.py
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work" / "generate"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64, help="StrongREJECT prompts answered per configuration.")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batches", default="1,8,32", help="Our batch sizes, comma-separated.")
    args = parser.parse_args()

    import torch

    from aperture.ml import bundled
    from aperture.risk.datasets import DataDirectory
    from aperture.risk.domain import SUITES, PromptItem, sample_items
    from aperture.risk.engine import GenerationRequest, TransformersEngine

    directory = bundled.convert_to_safetensors(bundled.find_bundled_gguf(), WORK / "model-cache")
    items, _ = DataDirectory().load_suite(SUITES["strongreject"])
    prompts = [i.prompt for i in sample_items(items, args.prompts, 0) if isinstance(i, PromptItem)]
    size = 4096
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(5))
    peak = 2 * size**3 / best
    print(f"float32 matmul peak (4096^2 torch.mm, best of 5): {peak / 1e9:.1f} GFLOP/s")

    engine = TransformersEngine(directory)
    tokenizer, model = engine.tokenizer, engine.model
    requests = [GenerationRequest((("user", p),)) for p in prompts]
    rows = []

    # The peer: one prompt at a time, no padding.
    eos = tokenizer.eos_token_id
    started = time.perf_counter()
    produced = 0
    with torch.inference_mode():
        for request in requests:
            ids = tokenizer(engine.chat_prompt(request), return_tensors="pt", add_special_tokens=False)["input_ids"]
            output = model.generate(ids, max_new_tokens=args.max_new_tokens, do_sample=False, pad_token_id=eos)
            new = output[0, ids.shape[1] :].tolist()
            produced += new.index(eos) if eos in new else len(new)
    rows.append(("generate x1", produced, time.perf_counter() - started))

    for batch in [int(b) for b in args.batches.split(",") if b]:
        started = time.perf_counter()
        produced = 0
        for start in range(0, len(requests), batch):
            results = engine.generate(requests[start : start + batch], args.max_new_tokens, time_limit_s=600)
            produced += sum(r.new_tokens for r in results)
        rows.append((f"aperture b{batch}", produced, time.perf_counter() - started))

    parameters = engine.parameters
    print(f"{'configuration':<14} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'MFU':>6}")
    for label, tokens, seconds in rows:
        mfu = 2 * parameters * tokens / seconds / peak
        print(f"{label:<14} {tokens:>7} {seconds:>8.1f} {tokens / seconds:>9.1f} {100 * mfu:>5.2f}%")
    peer = rows[0][1] / rows[0][2]
    label, tokens, seconds = max(rows[1:], key=lambda r: r[1] / r[2])
    ours = tokens / seconds
    print(f"ratio: {label} {ours:.1f} tokens/s / generate x1 {peer:.1f} tokens/s = {ours / peer:.2f}x (target >= 4x)")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def _timed(function: object) -> float:
    started = time.perf_counter()
    function()  # type: ignore[operator]
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
