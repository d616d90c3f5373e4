"""The whole-route walk's institution: SL1, SL3 and SL4 versions, a canary, a licensed-tier
version with a licence and a marked copy, a release decision on the SL4 version (rationale and
votes), a finding and an interrupted run on it, an approved grant with a download token, an alert,
a key request, a TLP:RED RAID item about the SL4 version named to someone else, and the walkers: a
low-clearance member (SL1, with a key and a password) and a `view`-scoped key of hers. Built from
the licensing tests' world (tests/licensing/world.py)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aperture.access.domain import SYSTEM, Action, Caller, PrincipalKind, Role, SecurityLevel, Vetting
from aperture.bootstrap import Services
from aperture.raid.domain import Binding, BindingKind, Detection, IntakeItem, Source, SourceKind
from aperture.raid.tlp import Audience, Tlp
from aperture.release.domain import Tier
from aperture.risk import store as risk_store
from aperture.risk.domain import RiskDomain
from tests.licensing.test_service import licensed
from tests.licensing.world import REFERENCE as LICENSED
from tests.licensing.world import SteppingClock, World, build_world, seat_the_board
from tests.registry.builders import write_hf_directory

PASSWORD = "correct horse battery staple"
# Words that must never reach the walkers: upper-tier names, the release decision's rationale and
# votes, the upper tier's results.
# Every version is 1.0 (the absent subject too): only names and ids tell subjects apart.
SL4, SL3, CANARY = "frontier-7b:1.0", "midsize-3b:1.0", "decoy-13b:1.0"
RATIONALE = "RATIONALE-c0ffee: secured until the uplift study reports"
VOTE = "VOTE-REASON-c0ffee: the uplift numbers are too high"
FINDING = "FINDING-c0ffee uplift study"
RAID_RED = "RAID-RED-c0ffee: the frontier model's weights were seen outside"
SECRETS = (
    "frontier-7b",
    "midsize-3b",
    "decoy-13b",
    "tiny-licensed",
    "RATIONALE-c0ffee",
    "VOTE-REASON-c0ffee",
    "FINDING-c0ffee",
    "RAID-RED-c0ffee",
)


@dataclass
class WalkWorld:
    services: Services
    licensing: World
    ids: dict[str, str] = field(default_factory=dict)  # what path parameters are filled with
    member_key: str = ""
    view_key: str = ""
    admin_key: str = ""

    def caller(self, name: str) -> Caller:
        return self.licensing.caller(name)


def _person(services: Services, name: str, level: SecurityLevel, roles: tuple[Role, ...], *, vetted: bool) -> None:
    services.access.add_principal(
        SYSTEM,
        name,
        kind=PrincipalKind.PERSON,
        organisation="institute",
        clearance=level,
        vetting=Vetting.ENHANCED if vetted else Vetting.NONE,
        roles=roles,
        programmes=("frontier",) if vetted else (),
    )


def build_walk_world(services: Services, tmp_path: Path, clock: SteppingClock, admin_key: str) -> WalkWorld:
    licensing = build_world(services, tmp_path, clock)
    seat_the_board(licensing)
    access, registry = services.access, services.registry
    _person(services, "mia", SecurityLevel.SL1, (Role.RESEARCHER,), vetted=False)
    _person(services, "alice", SecurityLevel.SL4, (Role.RESEARCHER,), vetted=True)
    _person(services, "sam", SecurityLevel.SL4, (Role.SECURITY_OFFICER,), vetted=True)
    access.set_password(SYSTEM, "mia", PASSWORD)
    world = WalkWorld(services, licensing, admin_key=admin_key)
    assert LICENSED == "tiny-licensed:1.0"
    member = access.issue_key(SYSTEM, name="mia", principal="mia", roles=(Role.RESEARCHER,))
    view = access.issue_key(SYSTEM, name="mia read-only", principal="mia", roles=(Role.RESEARCHER,), scopes=["view"])
    world.member_key, world.view_key = member.text, view.text
    versions: dict[str, Any] = {}
    upper = ((SL4, SecurityLevel.SL4, False), (SL3, SecurityLevel.SL3, False), (CANARY, SecurityLevel.SL4, True))
    for reference, level, canary in upper:
        name, number = reference.split(":")
        source = write_hf_directory(tmp_path / name)
        versions[reference] = registry.register(
            SYSTEM, source, name, number, level=level, programme="frontier", canary=canary, training_flop="1e20"
        ).version
    open_version = registry.register(SYSTEM, write_hf_directory(tmp_path / "open"), "open-1b", "1.0").version
    licensing.unseal()
    sl4 = versions[SL4]
    # A release decision on the SL4 version, with its rationale and votes.
    release = services.release
    proposal = release.propose(licensing.caller("dora"), SL4, Tier.SECURED, RATIONALE)
    for member_name in ("ada", "ben"):
        proposal = release.vote(licensing.caller(member_name), str(proposal["id"]), True, VOTE)
    # A result on it (a finding) and an interrupted run.
    services.risk.add_finding(SYSTEM, SL4, title=FINDING, summary="elevated", author="red team", domain=RiskDomain.BIO)
    run_id = secrets.token_hex(8)
    inputs = {"suite": "wmdp-bio", "model": SL4, "model_digest": sl4.manifest_digest}
    with services.database.transaction() as connection:
        risk_store.insert_run(connection, run_id, sl4.id, "wmdp-bio", services.clock.now(), "alice", inputs, 8)
    # An approved grant on it, with an unused download token.
    security = services.security
    grant = security.request_grant(licensing.caller("alice"), SL4, Action.DOWNLOAD, reason="evaluation", hours=4)
    security.approve_grant(licensing.caller("dora"), grant.id)
    token = security.issue_token(licensing.caller("alice"), grant.id, "config.json")
    # A canary touch (an alert), and a key request waiting for its second administrator.
    registry.get_version("decoy-13b", "1.0", licensing.caller("alice"))
    alert = security.alerts(licensing.caller("sam"))[0]
    request = access.request_key(SYSTEM, name="pending", principal="alice", roles=(Role.RESEARCHER,))
    # A TLP:RED RAID item about the SL4 version, named to alice only.
    red = IntakeItem(
        source=Source(SourceKind.SECURITY_ALERT, "walk-red"),
        title=RAID_RED,
        summary=RAID_RED,
        tlp=Tlp.RED,
        aware_at=services.clock.now(),
        detection=Detection.AUTOMATED_TOOL,
        bindings=(Binding(BindingKind.MODEL_VERSION, sl4.id),),
        audience=Audience(frozenset({"alice"})),
    )
    (raid_red,) = services.raid.intake.take_alerts(SYSTEM, [red]).taken
    # A licence on the licensed-tier version, with a marked copy and a download token for it.
    licence = licensed(licensing)
    copy = services.licensing.issue_copy(licensing.caller("olive"), licence.id)
    copy_token = services.licensing.issue_download_token(licensing.caller("alan"), copy.id)
    world.ids = {
        "grant": grant.id,
        "token": token.token,
        "run": run_id,
        "proposal": str(proposal["id"]),
        "alert": alert.id,
        "request": request.id,
        "licence": licence.id,
        "application": licence.application_id or "",
        "copy": copy.id,
        "sl4_id": sl4.id,
        "canary_id": versions[CANARY].id,
        "sl3_id": versions[SL3].id,
        "licensed_id": licensing.version.id,
        "open_id": open_version.id,
        "copy_token": copy_token.token,
        "raid_red": raid_red,
    }
    return world
