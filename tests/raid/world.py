"""A small institution for the RAID tests: states, organisations (one a client of another), a
programme, analysts of two clearances, a chief scientist, a security officer, partners, an outsider,
and two registered model versions (an SL1 one anyone sees, a sealed SL4 one of the programme)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aperture.access.domain import (
    ANONYMOUS,
    SYSTEM,
    Caller,
    Organisation,
    OrganisationKind,
    PrincipalKind,
    Role,
    RuleOfLaw,
    SecurityLevel,
    State,
    StateKind,
    Vetting,
)
from aperture.bootstrap import Services
from aperture.raid.domain import Binding, BindingKind, Detection, IntakeItem, Source, SourceKind
from aperture.raid.taxonomy import Severity
from aperture.raid.tlp import Audience, Tlp
from aperture.registry.domain import ModelVersion
from tests.registry.builders import write_hf_directory

PEOPLE: dict[str, tuple[str | None, SecurityLevel, Vetting, tuple[Role, ...], tuple[str, ...]]] = {
    "ana": ("institute", SecurityLevel.SL4, Vetting.ENHANCED, (Role.RAID_ANALYST,), ("frontier",)),
    "ben": ("institute", SecurityLevel.SL2, Vetting.BASELINE, (Role.RAID_ANALYST,), ()),
    "dora": ("institute", SecurityLevel.SL4, Vetting.ENHANCED, (Role.CHIEF_SCIENTIST,), ("frontier",)),
    "sol": ("institute", SecurityLevel.SL4, Vetting.ENHANCED, (Role.SECURITY_OFFICER,), ("frontier",)),
    "carl": ("northlab", SecurityLevel.SL2, Vetting.BASELINE, (Role.MEMBER_DELEGATE,), ()),
    "pia": ("northlab", SecurityLevel.SL2, Vetting.BASELINE, (Role.RESEARCHER,), ()),
    "kim": ("northlab-spinoff", SecurityLevel.SL2, Vetting.BASELINE, (Role.RESEARCHER,), ()),
    "otto": (None, SecurityLevel.SL1, Vetting.NONE, (Role.RESEARCHER,), ()),
    "keys": ("institute", SecurityLevel.SL1, Vetting.NONE, (Role.KEY_CUSTODIAN,), ()),
    "locks": ("institute", SecurityLevel.SL1, Vetting.NONE, (Role.KEY_CUSTODIAN,), ()),
}


class SteppingClock:
    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


@dataclass
class World:
    services: Services
    clock: SteppingClock
    open_version: ModelVersion  # SL1: everyone sees it
    sealed: ModelVersion  # SL4, programme frontier
    _count: list[int] = field(default_factory=lambda: [0])

    def caller(self, name: str) -> Caller:
        if name == "public":
            return ANONYMOUS
        if name == "system":
            return SYSTEM
        principal = self.services.access.get_principal(name)
        return Caller(principal=name, roles=principal.roles, key_id="ab12cd34", origin="192.0.2.7")

    def alert(
        self,
        *,
        title: str = "Gateway misuse: repeated blocks",
        tlp: Tlp = Tlp.AMBER_STRICT,
        versions: Sequence[str] = (),
        named: Sequence[str] = (),
        organisations: Sequence[str] = (),
        source_id: str | None = None,
        kind: SourceKind = SourceKind.GATEWAY_ALERT,
        summary: str = "three requests blocked within 600 s",
    ) -> IntakeItem:
        self._count[0] += 1
        return IntakeItem(
            source=Source(kind, source_id or f"alert-{self._count[0]}"),
            title=title,
            summary=summary,
            tlp=tlp,
            aware_at=self.clock.now() - timedelta(minutes=5),
            detection=Detection.AUTOMATED_TOOL,
            bindings=tuple(Binding(BindingKind.MODEL_VERSION, v) for v in versions),
            audience=Audience(frozenset(named), frozenset(organisations)),
            severity=Severity.HAZARD,
        )

    def take(self, *items: IntakeItem) -> list[str]:
        return list(self.services.raid.intake.take_alerts(SYSTEM, list(items)).taken)


def build_world(services: Services, clock: SteppingClock, tmp_path: Path) -> World:
    access = services.access
    access.save_state(SYSTEM, State("FR", "France", StateKind.MEMBER, True, SecurityLevel.SL4, RuleOfLaw.ADEQUATE))
    access.save_state(SYSTEM, State("NO", "Norway", StateKind.PARTNER, False, SecurityLevel.SL4, RuleOfLaw.ADEQUATE))
    access.save_organisation(SYSTEM, Organisation("institute", "The Institute", OrganisationKind.PUBLIC_BODY, "FR"))
    access.save_organisation(SYSTEM, Organisation("northlab", "North Lab", OrganisationKind.ACADEMIC, "NO"))
    access.save_organisation(
        SYSTEM,
        Organisation("northlab-spinoff", "North Lab spin-off", OrganisationKind.SPIN_OFF, "NO", parent="northlab"),
    )
    access.add_programme(SYSTEM, "frontier", "Frontier models")
    for name, (organisation, clearance, vetting, roles, programmes) in PEOPLE.items():
        access.add_principal(
            SYSTEM,
            name,
            kind=PrincipalKind.PERSON,
            organisation=organisation,
            clearance=clearance,
            vetting=vetting,
            roles=roles,
            programmes=programmes,
        )
    services.security.init_seal(SYSTEM, ["keys", "locks"], 2)
    registry = services.registry
    sealed = registry.register(
        SYSTEM,
        write_hf_directory(tmp_path / "frontier"),
        "frontier-7b",
        "1.0",
        level=SecurityLevel.SL4,
        programme="frontier",
    ).version
    open_version = registry.register(SYSTEM, write_hf_directory(tmp_path / "open"), "open-1b", "1.0").version
    return World(services, clock, open_version, sealed)
