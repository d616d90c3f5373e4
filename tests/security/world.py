"""A small institution the security tests share: states, organisations, a programme, people with
roles and clearances, the upper tier's key split among three custodians, and a sealed SL4 model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aperture.access.domain import (
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
from aperture.registry.domain import ModelVersion
from tests.registry.builders import write_hf_directory

PEOPLE: dict[str, tuple[str, SecurityLevel, Vetting, tuple[Role, ...], tuple[str, ...]]] = {
    # name: organisation, clearance, vetting, roles, programmes
    "alice": ("institute", SecurityLevel.SL4, Vetting.ENHANCED, (Role.RESEARCHER,), ("frontier",)),
    "bob": ("institute", SecurityLevel.SL4, Vetting.ENHANCED, (Role.PROGRAMME_DIRECTOR,), ("frontier",)),
    "sam": ("institute", SecurityLevel.SL4, Vetting.ENHANCED, (Role.SECURITY_OFFICER,), ("frontier",)),
    "olga": ("institute", SecurityLevel.SL4, Vetting.ENHANCED, (Role.SECURITY_OFFICER,), ("frontier",)),
    "nora": ("institute", SecurityLevel.SL4, Vetting.ENHANCED, (Role.PROGRAMME_DIRECTOR,), ()),
    "lena": ("institute", SecurityLevel.SL2, Vetting.BASELINE, (Role.RESEARCHER,), ("frontier",)),
    "pat": ("northlab", SecurityLevel.SL4, Vetting.ENHANCED, (Role.RESEARCHER,), ("frontier",)),
    "quinn": ("eastco", SecurityLevel.SL4, Vetting.ENHANCED, (Role.RESEARCHER,), ("frontier",)),
    "carol": ("institute", SecurityLevel.SL1, Vetting.NONE, (Role.KEY_CUSTODIAN,), ()),
    "dave": ("institute", SecurityLevel.SL1, Vetting.NONE, (Role.KEY_CUSTODIAN,), ()),
    "erin": ("institute", SecurityLevel.SL1, Vetting.NONE, (Role.KEY_CUSTODIAN,), ()),
}


@dataclass
class World:
    services: Services
    shares: dict[str, str]
    sealed: ModelVersion  # SL4, programme frontier
    open_version: ModelVersion  # SL1

    def caller(self, name: str) -> Caller:
        principal = self.services.access.get_principal(name)
        return Caller(principal=name, roles=principal.roles, key_id="ab12cd34", origin="192.0.2.7")

    def unseal(self) -> None:
        for name in ("carol", "dave"):
            self.services.security.present_share(self.caller(name), self.shares[name])


def build_world(services: Services, tmp_path: Path) -> World:
    access = services.access
    access.save_state(SYSTEM, State("FR", "France", StateKind.MEMBER, True, SecurityLevel.SL4, RuleOfLaw.ADEQUATE))
    access.save_state(SYSTEM, State("NO", "Norway", StateKind.PARTNER, False, SecurityLevel.SL4, RuleOfLaw.ADEQUATE))
    access.save_state(SYSTEM, State("XX", "Far", StateKind.PARTNER, False, SecurityLevel.SL2, RuleOfLaw.CONDITIONAL))
    access.save_organisation(SYSTEM, Organisation("institute", "The Institute", OrganisationKind.PUBLIC_BODY, "FR"))
    access.save_organisation(SYSTEM, Organisation("northlab", "North Lab", OrganisationKind.ACADEMIC, "NO"))
    access.save_organisation(SYSTEM, Organisation("eastco", "East Co", OrganisationKind.COMPANY, "XX"))
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
    shares = dict(services.security.init_seal(SYSTEM, ["carol", "dave", "erin"], 2))
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
    return World(services, shares, sealed, open_version)
