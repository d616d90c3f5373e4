"""An institution for the release tests: a programme director, a board of four, a small model and
evidence imported as lm-evaluation-harness results (fast, real import path)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from aperture.access.domain import (
    SYSTEM,
    Caller,
    Organisation,
    OrganisationKind,
    Role,
    RuleOfLaw,
    SecurityLevel,
    State,
    StateKind,
    Vetting,
)
from aperture.bootstrap import Services
from aperture.registry.domain import ModelVersion
from tests.registry.builders import write_hf_directory

BOARD = ("ada", "ben", "cy", "dee")


@dataclass
class Board:
    services: Services
    version: ModelVersion

    def caller(self, name: str) -> Caller:
        principal = self.services.access.get_principal(name)
        return Caller(principal=name, roles=principal.roles, key_id="0badcafe")

    @property
    def director(self) -> Caller:
        return self.caller("dora")

    def import_knowledge(
        self, accuracy: dict[str, float], n: int = 1000, *, version: ModelVersion | None = None
    ) -> int:
        """Import lm-eval WMDP results for the version (or another); returns the new profile version."""
        target = version or self.version
        results = {f"wmdp_{d}": {"acc,none": a, "acc_stderr,none": 0.01} for d, a in accuracy.items()}
        document = {
            "results": results,
            "n-samples": {f"wmdp_{d}": {"original": n, "effective": n} for d in accuracy},
            "config": {"model_args": f"pretrained=/models/x,revision=sha256:{target.manifest_digest}"},
        }
        _items, profile_version = self.services.risk.import_log(
            SYSTEM, target.reference, json.dumps(document).encode(), "results.json"
        )
        return profile_version


def build_board(services: Services, tmp_path: Path, *, training_flop: str = "1.6e21") -> Board:
    access = services.access
    access.save_state(SYSTEM, State("FR", "France", StateKind.MEMBER, True, SecurityLevel.SL4, RuleOfLaw.ADEQUATE))
    access.save_organisation(SYSTEM, Organisation("institute", "The Institute", OrganisationKind.PUBLIC_BODY, "FR"))
    people = {"dora": Role.PROGRAMME_DIRECTOR, "rita": Role.RESEARCHER} | dict.fromkeys(
        BOARD, Role.RELEASE_BOARD_MEMBER
    )
    for name, role in people.items():
        access.add_principal(
            SYSTEM, name, organisation="institute", clearance=SecurityLevel.SL2, vetting=Vetting.BASELINE, roles=(role,)
        )
    version = services.registry.register(
        SYSTEM,
        write_hf_directory(tmp_path / "small"),
        "small",
        "1.0",
        licence="Apache-2.0",
        training_flop=training_flop,
        modalities=["text"],
        intended_use="on-device text classification",
        level=SecurityLevel.SL2,
    ).version
    return Board(services, version)


CLEARED_BOARD = ("zoe", "yan", "xia")


def add_upper_tier(board: Board, tmp_path: Path, *, name: str = "secret") -> ModelVersion:
    """An SL3 version of programme `frontier` (sealed at rest) beside the board's SL2 one; a programme
    director and three board members cleared for it. The first board (ada, ben, cy, dee) and rita
    are not: they hold SL2 and no programme."""
    access = board.services.access
    access.add_programme(SYSTEM, "frontier", "Frontier models")
    cleared = {"dirk": Role.PROGRAMME_DIRECTOR} | dict.fromkeys(CLEARED_BOARD, Role.RELEASE_BOARD_MEMBER)
    for person, role in cleared.items():
        access.add_principal(
            SYSTEM,
            person,
            organisation="institute",
            clearance=SecurityLevel.SL3,
            vetting=Vetting.SECURITY_CHECK,
            roles=(role,),
            programmes=("frontier",),
        )
    for custodian in ("kim", "lou"):
        access.add_principal(SYSTEM, custodian, organisation="institute", roles=(Role.KEY_CUSTODIAN,))
    board.services.security.init_seal(SYSTEM, ["kim", "lou"], 2)
    source = write_hf_directory(tmp_path / name)
    (source / "README.md").write_text("# frontier checkpoint\n")  # its own weights' digest
    return board.services.registry.register(
        SYSTEM,
        source,
        name,
        "1.0",
        licence="proprietary",
        training_flop="1.6e21",
        modalities=["text"],
        intended_use="internal research",
        level=SecurityLevel.SL3,
        programme="frontier",
    ).version
