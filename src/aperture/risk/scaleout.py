"""Shard a suite across Ray workers (APERTURE_RAY_ADDRESS): each worker holds one copy of the model.

Chunks are the same units the in-process path checkpoints, so a sharded run saves, resumes and
scores exactly like a local one; chunks come back in completion order and are saved as they
arrive. The workers read the weights from the path the driver materialised, so the cluster's
nodes must share that filesystem (one machine, or a shared volume); docs/risk.md says so.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from aperture.core.errors import Unavailable
from aperture.registry.domain import ModelVersion
from aperture.risk.datasets import DataDirectory
from aperture.risk.domain import Item, ItemResult, Suite, find_suite
from aperture.risk.providers import judge_provider, transformers_engine_provider
from aperture.risk.scoring import GenerationSettings, score_chunk


class ChunkWorker:
    """Runs inside a Ray actor: loads the model once, scores chunks on request."""

    def __init__(
        self, model_dir: str, model_digest: str, batch_tokens: int, threads: int, data_root: str | None
    ) -> None:
        provider = transformers_engine_provider(batch_tokens, threads)
        self.engine = provider(Path(model_dir), model_digest)
        self.judges = judge_provider(DataDirectory(Path(data_root) if data_root else None), provider)

    def score(
        self, number: int, suite_name: str, items: list[Item], generation: dict[str, Any], judge_spec: str
    ) -> tuple[int, list[ItemResult]]:
        settings = GenerationSettings(**generation)
        return number, score_chunk(self.engine, find_suite(suite_name), items, settings, self.judges(judge_spec))


class RayChunkRunner:
    def __init__(self, address: str, workers: int, *, batch_tokens: int, threads: int, data_root: Path | None) -> None:
        self.address = address
        self.workers = workers
        self.batch_tokens = batch_tokens
        self.threads = threads
        self.data_root = data_root

    def __call__(
        self,
        model_dir: Path,
        version: ModelVersion,
        suite: Suite,
        chunks: Sequence[tuple[int, list[Item]]],
        generation: GenerationSettings,
        judge_spec: str,
    ) -> Iterator[tuple[int, list[ItemResult]]]:
        try:
            import ray
        except ImportError:
            raise Unavailable(
                "APERTURE_RAY_ADDRESS is set but ray is not installed", hint="pip install 'ray[default]' or unset it"
            ) from None
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, log_to_driver=False, include_dashboard=False)
            except (ConnectionError, RuntimeError) as error:
                raise Unavailable(
                    f"cannot join the Ray cluster at {self.address}: {error}", hint="start it, or unset the address"
                ) from None
        worker_class: Any = ray.remote(num_cpus=1)(ChunkWorker)
        count = max(1, min(self.workers, len(chunks)))
        data_root = str(self.data_root) if self.data_root else None
        actors = [
            worker_class.remote(str(model_dir), version.manifest_digest, self.batch_tokens, self.threads, data_root)
            for _ in range(count)
        ]
        generation_dict = {k: v for k, v in generation.to_dict().items() if k != "decoding"}
        queue = list(chunks)
        in_flight: dict[Any, Any] = {}
        try:
            for actor in actors:  # two chunks per actor in flight keeps each busy between results
                for _ in range(2):
                    if queue:
                        number, items = queue.pop(0)
                        in_flight[actor.score.remote(number, suite.name, items, generation_dict, judge_spec)] = actor
            while in_flight:
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                actor = in_flight.pop(ready[0])
                number, results = ray.get(ready[0])
                if queue:
                    next_number, items = queue.pop(0)
                    in_flight[actor.score.remote(next_number, suite.name, items, generation_dict, judge_spec)] = actor
                yield number, results
        finally:
            for actor in actors:
                ray.kill(actor)
