"""Robustness of the traceable mark on the bundled model (SmolLM2-135M-Instruct), and its quality cost.

For each attack on licensee 0007's marked copy: the true licensee's z and the largest z of the
other issued keys (every coordinate), plus the largest of 200 never-issued keys (2 % screen).
Target: true z >= 6 and no innocent z >= 6 in every row.

Attacks (each written to disk in the format a leaker would publish, then traced from that file):
- full fine-tuning: AdamW, lr 5e-5, >= 200 steps, batch 1 x <= 256 tokens, on instruction data
  (the 10 AOA identity-shift conversations shipped with the risk area, Qi et al. 2023, MIT);
- LoRA (r 16 on every projection, lr 2e-4, 200 steps) merged into the weights;
- int8 (per-row round-to-nearest, dequantized to float32);
- GGUF Q4_0 and Q4_1 files written with the gguf package's quantizer (Python; llama.cpp's own
  quantize tool is not installed here), q/k rows permuted as llama.cpp's converter does;
- 30 % magnitude pruning of every block projection;
- permutation of the FFN neurons of every layer;
- the average of 3 licensees' copies (collusion).

Quality: perplexity of the original and the marked copy on held-out text (300 WMDP questions with
their correct answers, shipped with the risk area), with a paired bootstrap CI of the difference,
and the mean per-token KL(original || marked); and WMDP accuracy (bio, chem, cyber, every item,
the risk area's engine and scoring) of both, each with its Wilson 95 % CI, and a paired bootstrap
CI of the difference.

    .venv/bin/python bench/bench_trace_robustness.py [--steps 200] [--quality-docs 300]
    .venv/bin/python bench/bench_trace_robustness.py --only wmdp   # the WMDP comparison alone
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aperture.licensing import marking
from aperture.licensing.weights import EMBEDDING, permute_rope
from licensing_support import (
    WORK,
    bundled_dir,
    load_original,
    new_master,
    residual_of,
    rss_mib,
    seeds_for,
    write_marked,
)

RISK_DATA = Path(__file__).resolve().parent.parent / "src" / "aperture" / "risk" / "data"
VICTIM = "licensee-0007"
COLLUDERS = ("licensee-0007", "licensee-0011", "licensee-0013")
ISSUED = 16


def save_dir(source: Path, target: Path, tensors: dict[str, np.ndarray]) -> Path:
    from safetensors.numpy import save_file

    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.name != "model.safetensors":
            shutil.copy(item, target / item.name)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(target / "model.safetensors"))
    return target


def load_tensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path / "model.safetensors"))


def conversations(tokenizer: Any) -> list[list[int]]:
    rows = [json.loads(line) for line in (RISK_DATA / "finetune_attacks" / "identity-shift-aoa.jsonl").open()]
    texts = [tokenizer.apply_chat_template(row["messages"], tokenize=False) for row in rows]
    return [list(tokenizer(text, truncation=True, max_length=256).input_ids) for text in texts]


def fine_tune(directory: Path, target: Path, *, steps: int, lora: bool) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    model = AutoModelForCausalLM.from_pretrained(str(directory), torch_dtype=torch.float32)
    if lora:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=16,
            lora_alpha=32,
            lora_dropout=0.0,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        )
        model = get_peft_model(model, config)
        lr = 2e-4
    else:
        lr = 5e-5
    model.train()
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
    data = conversations(tokenizer)
    started = time.perf_counter()
    losses = []
    for step in range(steps):
        ids = torch.tensor([data[step % len(data)]])
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        losses.append(float(loss))
    seconds = time.perf_counter() - started
    if lora:
        model = model.merge_and_unload()
    model.save_pretrained(str(target), safe_serialization=True)
    tokenizer.save_pretrained(str(target))
    return {"steps": steps, "lr": lr, "seconds": round(seconds, 1), "loss_first": losses[0], "loss_last": losses[-1]}


def int8(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for name, value in tensors.items():
        if value.ndim == 2:
            scale = np.abs(value).max(axis=1, keepdims=True) / 127
            scale[scale == 0] = 1
            out[name] = (np.round(value / scale) * scale).astype(np.float32)
        else:
            out[name] = value
    return out


def prune(tensors: dict[str, np.ndarray], fraction: float = 0.3) -> dict[str, np.ndarray]:
    out = dict(tensors)
    for name in marking.marked_names(tensors):
        value = tensors[name].copy()
        value[np.abs(value) < np.quantile(np.abs(value), fraction)] = 0
        out[name] = value
    return out


def permute(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    out = dict(tensors)
    layer = 0
    while f"model.layers.{layer}.mlp.gate_proj.weight" in tensors:
        mlp = f"model.layers.{layer}.mlp."
        order = rng.permutation(tensors[mlp + "gate_proj.weight"].shape[0])
        out[mlp + "gate_proj.weight"] = tensors[mlp + "gate_proj.weight"][order]
        out[mlp + "up_proj.weight"] = tensors[mlp + "up_proj.weight"][order]
        out[mlp + "down_proj.weight"] = tensors[mlp + "down_proj.weight"][:, order]
        layer += 1
    return out


GGUF_PARTS = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def write_gguf(tensors: dict[str, np.ndarray], path: Path, qtype_name: str, heads: int, kv_heads: int) -> Path:
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import quantize

    qtype = GGMLQuantizationType[qtype_name]
    writer = GGUFWriter(str(path), "llama")
    layers = 1 + max(int(n.split(".")[2]) for n in tensors if n.startswith("model.layers."))
    writer.add_block_count(layers)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    for name, value in tensors.items():
        if name == EMBEDDING:
            out = "token_embd.weight"
        elif name == "model.norm.weight":
            out = "output_norm.weight"
        elif name.startswith("model.layers."):
            parts = name.split(".")
            out = f"blk.{parts[2]}.{GGUF_PARTS['.'.join(parts[3:-1])]}.weight"
        else:
            continue
        array = np.ascontiguousarray(value, dtype=np.float32)
        if "q_proj" in name:
            array = permute_rope(array, heads)
        elif "k_proj" in name:
            array = permute_rope(array, kv_heads)
        if array.ndim == 2 and name != EMBEDDING:
            writer.add_tensor(out, quantize(array, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(out, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def score(
    suspect: Path, arrays: dict[str, np.ndarray], seeds: dict[str, bytes], guilty: tuple[str, ...]
) -> dict[str, Any]:
    traced = residual_of(suspect, arrays)
    z = {key: marking.zscore(traced.residual, seed) for key, seed in seeds.items()}
    screen = marking.screen_subset(traced.residual, 0.02)
    null = marking.empirical_null(screen, b"robustness-null", 200)
    return {
        "true_z": {key: round(z[key], 1) for key in guilty},
        "max_innocent_issued_z": round(max(v for k, v in z.items() if k not in guilty), 2),
        "max_null_z_screen": round(max(null), 2),
        "registration": {
            "row_permuted": len(traced.registration.row_permuted),
            "column_permuted": len(traced.registration.column_permuted),
            "rescaled": len(traced.registration.rescaled),
            "missing": len(traced.registration.missing),
        },
        "pass": all(z[key] >= 6 for key in guilty) and max(v for k, v in z.items() if k not in guilty) < 6,
    }


def perplexity(directory: Path, marked: Path, documents: int) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    texts = []
    for subject in ("bio", "cyber", "chem"):
        for item in json.loads((RISK_DATA / "wmdp" / f"{subject}_questions.json").read_text())[: documents // 3]:
            texts.append(f"{item['question']}\nAnswer: {item['choices'][item['answer']]}")
    encoded = [tokenizer(text, return_tensors="pt").input_ids[:, :256] for text in texts]
    nll: dict[str, list[float]] = {}
    tokens = [int(ids.shape[1] - 1) for ids in encoded]
    kl_sum = 0.0
    logits_base: list[Any] = []
    for label, path in (("original", directory), ("marked", marked)):
        model = AutoModelForCausalLM.from_pretrained(str(path), torch_dtype=torch.float32).eval()
        rows = []
        with torch.no_grad():
            for index, ids in enumerate(encoded):
                logits = model(input_ids=ids).logits[0, :-1].float()
                logp = torch.log_softmax(logits, dim=-1)
                rows.append(float(-logp.gather(1, ids[0, 1:, None]).sum()))
                if label == "original":
                    logits_base.append(logp.to(torch.bfloat16))
                else:
                    base = logits_base[index].float()
                    kl_sum += float((base.exp() * (base - logp)).sum())
        nll[label] = rows
        del model
    a, b, n = np.array(nll["original"]), np.array(nll["marked"]), np.array(tokens)
    ppl = {k: float(np.exp(np.sum(v) / n.sum())) for k, v in (("original", a), ("marked", b))}
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(2000):
        pick = rng.integers(0, len(n), len(n))
        diffs.append(np.exp(b[pick].sum() / n[pick].sum()) - np.exp(a[pick].sum() / n[pick].sum()))
    low, high = np.percentile(diffs, [2.5, 97.5])
    boot_a = [np.exp(a[p].sum() / n[p].sum()) for p in (rng.integers(0, len(n), len(n)) for _ in range(2000))]
    return {
        "documents": len(texts),
        "tokens": int(n.sum()),
        "perplexity": {k: round(v, 4) for k, v in ppl.items()},
        "original_ci95": [round(float(x), 3) for x in np.percentile(boot_a, [2.5, 97.5])],
        "difference": round(ppl["marked"] - ppl["original"], 4),
        "difference_ci95_paired": [round(float(low), 4), round(float(high), 4)],
        "relative_difference": round((ppl["marked"] - ppl["original"]) / ppl["original"], 6),
        "mean_kl_per_token": kl_sum / n.sum(),
    }


def wmdp_accuracy(directory: Path, marked: Path, limit: int | None) -> dict[str, Any]:
    """WMDP accuracy of the original and the marked copy on the same items, scored as the risk
    area scores a run (loglikelihood of " A".." D"), with Wilson CIs and a paired bootstrap CI of
    the difference (the items are shared, so the pairing removes the items' own variance)."""
    import gc

    from aperture.risk.datasets import DataDirectory
    from aperture.risk.domain import (
        SUITES,
        MultipleChoiceItem,
        multiple_choice_context,
        multiple_choice_continuations,
        wilson_interval,
    )
    from aperture.risk.engine import ChoiceRequest, TransformersEngine

    suites = ("wmdp-bio", "wmdp-chem", "wmdp-cyber")
    data = DataDirectory()
    items = {
        name: [i for i in data.load_suite(SUITES[name])[0] if isinstance(i, MultipleChoiceItem)][:limit]
        for name in suites
    }
    correct: dict[str, dict[str, np.ndarray]] = {name: {} for name in suites}
    seconds: dict[str, float] = {}
    for label, path in (("original", directory), ("marked", marked)):
        engine = TransformersEngine(path, batch_tokens=2048)
        started = time.perf_counter()
        for name in suites:
            header = SUITES[name].header
            requests = [
                ChoiceRequest(multiple_choice_context(header, i), multiple_choice_continuations(i)) for i in items[name]
            ]
            scores = engine.loglikelihoods(requests)
            correct[name][label] = np.array(
                [max(range(4), key=lambda k: s[k]) == i.answer for s, i in zip(scores, items[name], strict=True)]
            )
        seconds[label] = round(time.perf_counter() - started, 1)
        del engine
        gc.collect()
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"seconds": seconds}
    for name in suites:
        a, b = correct[name]["original"], correct[name]["marked"]
        n = len(a)
        picks = rng.integers(0, n, (2000, n))
        differences = b[picks].mean(axis=1) - a[picks].mean(axis=1)
        low, high = np.percentile(differences, [2.5, 97.5])
        out[name] = {
            "items": n,
            "original": round(float(a.mean()), 4),
            "original_ci95": [round(x, 4) for x in wilson_interval(int(a.sum()), n)],
            "marked": round(float(b.mean()), 4),
            "marked_ci95": [round(x, 4) for x in wilson_interval(int(b.sum()), n)],
            "difference": round(float(b.mean() - a.mean()), 4),
            "difference_ci95_paired": [round(float(low), 4), round(float(high), 4)],
            "answers_changed": int((a != b).sum()),
            "inside_ci": bool(low <= 0 <= high),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--quality-docs", type=int, default=300)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--wmdp-limit", type=int, default=None, help="Fewer WMDP items per subject (default: all).")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    work = WORK / "robustness"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    source = bundled_dir()
    config = json.loads((source / "config.json").read_text())
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    results: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        master = new_master()
        seeds = seeds_for(master, ISSUED)
        arrays, metadata, _buffer = load_original(source)
        marked_dirs = {}
        for key in COLLUDERS:
            target = work / f"copy-{key}"
            target.mkdir()
            for item in source.iterdir():
                if item.name != "model.safetensors":
                    shutil.copy(item, target / item.name)
            write_marked(arrays, metadata, seeds[key], target / "model.safetensors")
            marked_dirs[key] = target
        victim = marked_dirs[VICTIM]
        copy = load_tensors(victim)

        def want(name: str) -> bool:
            return args.only is None or name in args.only

        def row(name: str, suspect: Path, guilty: tuple[str, ...] = (VICTIM,), **extra: Any) -> None:
            results[name] = {**score(suspect, arrays, seeds, guilty), **extra}
            print(name, json.dumps(results[name]), flush=True)

        if want("clean"):
            row("clean copy", victim / "model.safetensors")
        if want("finetune"):
            info = fine_tune(victim, work / "ft", steps=args.steps, lora=False)
            row(f"full fine-tuning, {args.steps} steps", work / "ft", **info)
            shutil.rmtree(work / "ft")
        if want("lora"):
            info = fine_tune(victim, work / "lora", steps=args.steps, lora=True)
            row(f"LoRA r16 merged, {args.steps} steps", work / "lora", **info)
            shutil.rmtree(work / "lora")
        if want("int8"):
            row("int8 per-row", save_dir(victim, work / "int8", int8(copy)) / "model.safetensors")
        if want("gguf"):
            for qtype in ("Q4_0", "Q4_1"):
                path = write_gguf(copy, work / f"copy-{qtype}.gguf", qtype, heads, kv_heads)
                row(f"GGUF {qtype}", path)
                path.unlink()
        if want("prune"):
            row("30% magnitude pruning", save_dir(victim, work / "prune", prune(copy)) / "model.safetensors")
        if want("permute"):
            row("FFN neuron permutation", save_dir(victim, work / "perm", permute(copy)) / "model.safetensors")
        if want("average"):
            copies = [load_tensors(marked_dirs[key]) for key in COLLUDERS]
            average = {name: (copies[0][name] + copies[1][name] + copies[2][name]) / 3 for name in copies[0]}
            del copies
            row("average of 3 copies", save_dir(victim, work / "avg", average) / "model.safetensors", COLLUDERS)
        if want("unrelated"):
            rng = np.random.default_rng(5)
            unrelated = {
                k: (v + rng.standard_normal(v.shape).astype(np.float32) * v.std()).astype(np.float32)
                if v.ndim == 2
                else v
                for k, v in arrays.items()
            }
            results["unrelated weights (H0)"] = score(
                save_dir(source, work / "unrelated", unrelated) / "model.safetensors", arrays, seeds, ()
            )
            results["unrelated weights (H0)"]["note"] = "original plus noise as large as the weights: no licensee's key"
            print("unrelated", json.dumps(results["unrelated weights (H0)"]), flush=True)
        if want("quality"):
            results["quality"] = perplexity(source, victim, args.quality_docs)
            print("quality", json.dumps(results["quality"]), flush=True)
        if want("wmdp"):
            results["wmdp"] = wmdp_accuracy(source, victim, args.wmdp_limit)
            print("wmdp", json.dumps(results["wmdp"]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"total {time.perf_counter() - started:.0f} s, peak RSS {rss_mib():.0f} MiB")
    print("| attack | true z | max innocent z (issued, full) | max null z (200, screen) | pass |")
    print("|---|---|---|---|---|")
    for name, value in results.items():
        if name in ("quality", "wmdp"):
            continue
        true = ", ".join(f"{v:.0f}" for v in value["true_z"].values()) or "-"
        print(
            f"| {name} | {true} | {value['max_innocent_issued_z']:.2f} | {value['max_null_z_screen']:.2f} | "
            f"{'yes' if value.get('pass', value['max_innocent_issued_z'] < 6) else 'NO'} |"
        )
    print(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
