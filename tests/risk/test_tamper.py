"""The tamper-resistance grid: LoRA and full fine-tuning attacks on copies, worst case reported."""

from __future__ import annotations

import pytest

from aperture.access.domain import SYSTEM
from aperture.bootstrap import Services
from aperture.core.errors import InvalidInput
from aperture.registry.domain import ModelVersion
from aperture.risk.domain import EvidenceKind, Safeguard
from aperture.risk.tamper import TamperRunner


@pytest.mark.slow
def test_quick_grid_runs_both_methods_and_reports_the_worst_case(
    services: Services, tiny_version: ModelVersion
) -> None:
    runner = TamperRunner(services.risk)
    evidence, profile_version = runner.run(
        SYSTEM, tiny_version.reference, "quick", ["wmdp-bio", "strongreject"], limit=4, max_new_tokens=4
    )
    assert evidence.kind is EvidenceKind.TAMPER and evidence.safeguard is Safeguard.TAMPER_RESISTANCE
    cells = evidence.summary["cells"]
    assert {c["method"] for c in cells} == {"lora", "full"}
    assert all(c["final_loss"] == c["final_loss"] for c in cells)  # a number, not NaN: training ran
    for suite in ("wmdp-bio", "strongreject"):
        row = evidence.summary["suites"][suite]
        assert row["cells"] == 2 and "worst" in row and row["budget_curve"]
    assert evidence.provenance["grid"]["seeds"] == [0]
    assert evidence.provenance["model_digest"] == tiny_version.manifest_digest
    assert services.risk.profile(tiny_version.reference, caller=SYSTEM)["profile_version"] == profile_version
    # The base weights are untouched by the attacks: a fresh engine scores as before.
    again, _ = runner.run(SYSTEM, tiny_version.reference, "quick", ["wmdp-bio"], limit=4, max_new_tokens=4)
    assert again.summary["suites"]["wmdp-bio"]["baseline"] == evidence.summary["suites"]["wmdp-bio"]["baseline"]


def test_grid_refuses_generative_suites_it_cannot_rerun(services: Services, tiny_version: ModelVersion) -> None:
    with pytest.raises(InvalidInput, match="cannot be re-run under attack"):
        TamperRunner(services.risk).run(SYSTEM, tiny_version.reference, "quick", ["jailbreak"])
    with pytest.raises(InvalidInput, match="no attack grid"):
        TamperRunner(services.risk).run(SYSTEM, tiny_version.reference, "everything", ["wmdp-bio"])
