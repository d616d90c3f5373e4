"""Tamper resistance: a pre-declared grid of fine-tuning attacks on copies of the weights.

Every cell of the grid (data set x LoRA or full fine-tuning x learning rate x steps x seed)
fine-tunes a fresh in-memory copy of the version's weights on the attack data, then re-runs the
chosen suites on the attacked copy with the same items as the baseline. The evidence reports the
worst case over the grid and the smallest budget that broke the safeguard, never the mean alone
(Qi et al. 2024, "On Evaluating the Durability of Safeguards for Open-Weight LLMs").

LoRA comes from `peft`. Memory: one base copy plus one attacked copy; full fine-tuning with
AdamW adds gradients and two optimiser states (about 3x the model in float32), which is why the
grid runs cells one after another and frees each copy before the next.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Sequence
from typing import Any

from aperture.access.domain import Caller
from aperture.core.errors import InvalidInput
from aperture.core.ids import new_id
from aperture.risk.domain import (
    AttackCell,
    AttackOutcome,
    Estimate,
    Evidence,
    EvidenceKind,
    FineTuneMethod,
    Safeguard,
    SuiteKind,
    find_grid,
    find_suite,
    sample_items,
    summarise,
    summarise_tamper,
)
from aperture.risk.engine import TransformersEngine
from aperture.risk.scoring import GenerationSettings, RuleJudge, expand_items, order_for_batching, score_chunk
from aperture.risk.service import ProgressSink, RiskService

LORA_RANK = 8
ATTACK_BATCH = 4


def _training_tensors(engine: TransformersEngine, conversations: Sequence[list[dict[str, str]]]) -> list[Any]:
    """(input ids, labels) per conversation; only the final assistant answer is trained on."""
    import torch

    tokenizer = engine.tokenizer
    examples = []
    for messages in conversations:
        prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(full, add_special_tokens=False)["input_ids"][:512]
        labels = [-100] * min(len(prompt_ids), len(full_ids)) + full_ids[len(prompt_ids) :]
        examples.append((torch.tensor(full_ids), torch.tensor(labels[: len(full_ids)])))
    return examples


def fine_tune(base: Any, examples: Sequence[Any], cell: AttackCell, pad_id: int) -> tuple[Any, float]:
    """A fine-tuned copy of `base` for one grid cell, and its last training loss."""
    with warnings.catch_warnings():
        # peft still calls a transformers API deprecated in transformers 5; nothing for us to change.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return _fine_tune(base, examples, cell, pad_id)


def _fine_tune(base: Any, examples: Sequence[Any], cell: AttackCell, pad_id: int) -> tuple[Any, float]:
    import torch

    torch.manual_seed(cell.seed)
    model = copy.deepcopy(base)
    model.train()
    if cell.method is FineTuneMethod.LORA:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=LORA_RANK, lora_alpha=2 * LORA_RANK, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]
        )
        model = get_peft_model(model, config)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(parameters, lr=cell.learning_rate)
    generator = torch.Generator().manual_seed(cell.seed)
    loss_value = float("nan")
    for _step in range(cell.steps):
        picks = torch.randperm(len(examples), generator=generator)[:ATTACK_BATCH].tolist()
        batch = [examples[i] for i in picks]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (ids, target) in enumerate(batch):
            input_ids[row, : len(ids)] = ids
            labels[row, : len(target)] = target
            attention[row, : len(ids)] = 1
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        loss_value = float(loss.detach())
    if cell.method is FineTuneMethod.LORA:
        model = model.merge_and_unload()
    model.eval()
    return model, loss_value


class TamperRunner:
    def __init__(self, risk: RiskService) -> None:
        self.risk = risk

    def run(
        self,
        caller: Caller,
        reference: str,
        grid_name: str,
        suite_names: Sequence[str],
        *,
        limit: int | None = 64,
        max_new_tokens: int = 64,
        progress: ProgressSink | None = None,
    ) -> tuple[Evidence, int]:
        grid = find_grid(grid_name)
        suites = [find_suite(name) for name in suite_names]
        for suite in suites:
            if suite.kind not in (SuiteKind.KNOWLEDGE, SuiteKind.REFUSAL):
                raise InvalidInput(
                    f"suite {suite.name} cannot be re-run under attack", hint="use knowledge or refusal suites"
                )
        if not suites:
            raise InvalidInput("name at least one suite to re-run", hint="e.g. --suite wmdp-bio --suite strongreject")
        version = self.risk.assessed_version(caller, reference)
        self.risk.require_lower_tier(version)
        data = self.risk.data
        chosen = {}
        hashes: dict[str, str] = {}
        for suite in suites:
            items, file_hashes = data.load_suite(suite)
            chosen[suite.name] = order_for_batching(expand_items(suite, sample_items(items, limit, 0)))
            hashes.update(file_hashes)
        attack_sets = {}
        for dataset in grid.datasets:
            conversations, digest = data.load_conversations(dataset)
            attack_sets[dataset] = conversations
            hashes[dataset] = digest
        cells = grid.cells()
        generation = GenerationSettings(max_new_tokens=max_new_tokens, time_limit_s=120.0)
        judge = RuleJudge()
        per_cell = sum(len(items) for items in chosen.values())
        if progress is not None:
            progress.start(f"tamper grid {grid.name} on {version.reference}", per_cell * (len(cells) + 1), 0)
        model_dir = self.risk.model_directory(version)
        engine = TransformersEngine(model_dir, model_digest=version.manifest_digest)
        started = time.monotonic()
        base_model = engine.model

        def measure() -> dict[str, Estimate]:
            measured = {}
            for suite in suites:
                results = score_chunk(engine, suite, chosen[suite.name], generation, judge)
                measured[suite.name] = Estimate.from_dict(summarise(suite, results)["headline"])
                if progress is not None:
                    progress.advance(len(results))
            return measured

        baseline = measure()
        outcomes = []
        pad = int(engine.tokenizer.pad_token_id)
        for cell in cells:
            examples = _training_tensors(engine, attack_sets[cell.dataset])
            attacked, loss = fine_tune(base_model, examples, cell, pad)
            engine.model = attacked
            try:
                outcomes.append(AttackOutcome(cell, measure(), loss))
            finally:
                engine.model = base_model
                del attacked
        riskier = {suite.name: suite.kind is SuiteKind.KNOWLEDGE for suite in suites}
        per_suite = summarise_tamper(baseline, outcomes, riskier)
        first = suites[0].name
        worst = Estimate.from_dict(per_suite[first]["worst"])
        evidence = Evidence(
            id=new_id(),
            kind=EvidenceKind.TAMPER,
            model_version_id=version.id,
            created_at=self.risk.clock.now(),
            title=f"Tamper grid {grid.name}: {len(cells)} fine-tuning attacks, worst case of {first}",
            suite="tamper",
            domain=None,
            safeguard=Safeguard.TAMPER_RESISTANCE,
            headline=Estimate(f"worst_{worst.metric}", worst.successes, worst.n, worst.low, worst.high),
            summary={
                "suites": per_suite,
                "cells": [
                    {
                        "cell": o.cell.key,
                        "method": o.cell.method.value,
                        "learning_rate": o.cell.learning_rate,
                        "steps": o.cell.steps,
                        "seed": o.cell.seed,
                        "final_loss": o.final_loss,
                        "metrics": {name: e.to_dict() for name, e in o.metrics.items()},
                    }
                    for o in outcomes
                ],
                "caveat": "A fixed grid is a lower bound on what an adaptive attacker achieves; the worst case, not "
                "the mean, is the result. Small models make these numbers weakly informative.",
                "elapsed_s": round(time.monotonic() - started, 1),
            },
            provenance={
                "grid": {
                    "name": grid.name,
                    "datasets": list(grid.datasets),
                    "methods": [m.value for m in grid.methods],
                    "learning_rates": list(grid.learning_rates),
                    "steps": list(grid.steps),
                    "seeds": list(grid.seeds),
                    "lora_rank": LORA_RANK,
                    "batch": ATTACK_BATCH,
                    "optimiser": "AdamW",
                },
                "data_files": hashes,
                "limit": limit,
                "model": version.reference,
                "model_digest": version.manifest_digest,
                "engine": engine.describe(),
                "generation": generation.to_dict(),
                "judge": judge.name,
            },
            author=caller.actor,
        )
        engine.close()
        profile_version = self.risk.record_evidence(caller, version, evidence, "risk.tamper.completed")
        return evidence, profile_version
