"""lm-evaluation-harness on the same WMDP items, as the reference our engine must agree with.

A local task with the `wmdp_*` task's exact template reads a JSON copy of the items, so the
harness scores the same bytes without the hub. Used by the agreement test and the benchmark.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aperture.risk.domain import MultipleChoiceItem

TASK_YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{doc_to_text}"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: answer
description: "{description}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""

# lm-evaluation-harness's `wmdp_*` template (tasks/wmdp/_default_template_yaml), escaped for YAML.
DOC_TO_TEXT = (
    "{{question.strip()}}\\nA. {{choices[0]}}\\nB. {{choices[1]}}\\nC. {{choices[2]}}\\nD. {{choices[3]}}\\nAnswer:"
)


@dataclass(frozen=True, slots=True)
class ReferenceResult:
    accuracy: float
    loglikelihoods: list[list[float]]  # per item (in the given order), per choice
    seconds: float


def run_lm_eval(
    model_dir: Path, items: Sequence[MultipleChoiceItem], header: str, work_dir: Path, batch_size: int
) -> ReferenceResult:
    import lm_eval
    from lm_eval.tasks import TaskManager

    work_dir.mkdir(parents=True, exist_ok=True)
    data = work_dir / "items.jsonl"
    with data.open("w") as handle:
        for position, item in enumerate(items):
            row = {
                "question": item.question,
                "choices": list(item.choices),
                "answer": item.answer,
                "position": position,
            }
            handle.write(json.dumps(row) + "\n")
    task = "aperture_wmdp_reference"
    description = header.replace("\n", "\\n")
    (work_dir / f"{task}.yaml").write_text(
        TASK_YAML.format(task=task, data=data, description=description, doc_to_text=DOC_TO_TEXT)
    )
    started = time.perf_counter()
    output = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={model_dir},dtype=float32",
        tasks=[task],
        task_manager=TaskManager(include_path=str(work_dir)),
        batch_size=batch_size,
        log_samples=True,
        device="cpu",
    )
    seconds = time.perf_counter() - started
    assert output is not None
    samples = sorted(output["samples"][task], key=lambda s: s["doc"]["position"])
    scores = [[float(response[0][0]) for response in sample["resps"]] for sample in samples]
    return ReferenceResult(float(output["results"][task]["acc,none"]), scores, seconds)
