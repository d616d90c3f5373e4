"""The platform's records as intake items (one adapter per source), sharing, and partners' STIX."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from aperture.access.domain import ANONYMOUS, SYSTEM, SecurityLevel
from aperture.core.errors import Forbidden, InvalidInput, NotFound, TooLarge
from aperture.gateway.domain import Alert as GatewayAlert
from aperture.licensing.domain import Funding, Licence, LicenceState, Schedule, Terms
from aperture.raid import sources
from aperture.raid.domain import BindingKind, SourceKind
from aperture.raid.tlp import MARKING_IDS, TLP2_EXTENSION_ID, Tlp, marking_definition
from aperture.risk.domain import Crossing, Estimate, Evidence, EvidenceKind, RiskDomain, Threshold, build_profile
from tests.raid.world import World
from tests.registry.builders import write_hf_directory

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def test_a_canary_touch_becomes_an_incident_bound_to_its_version_without_its_label(
    world: World, tmp_path: Path
) -> None:
    services = world.services
    decoy = services.registry.register(
        SYSTEM,
        write_hf_directory(tmp_path / "decoy"),
        "frontier-13b",
        "0.9",
        level=SecurityLevel.SL4,
        programme="frontier",
        canary=True,
    ).version
    services.registry.get_version("frontier-13b", "0.9", world.caller("sol"))  # the touch
    (alert,) = services.security.alerts(world.caller("sol"))
    organisations = {p.name: p.organisation for p in services.access.list_principals()}
    item = sources.from_security_alert(alert, organisation_of=organisations)
    assert "frontier-13b" not in item.title + item.summary + json.dumps(item.evidence)
    assert item.tlp is Tlp.AMBER_STRICT and item.aware_at == alert.raised_at
    (taken,) = world.take(item)
    assert world.take(item) == []  # the same alert again: a safe no-op
    found = services.raid.desk.get(world.caller("ana"), taken)
    assert found.source.kind is SourceKind.SECURITY_ALERT and found.versions() == (decoy.id,)
    assert ("organisation", "institute") in {(b.kind.value, b.ref) for b in found.bindings}
    with pytest.raises(NotFound):
        services.raid.desk.get(world.caller("ben"), taken)  # not cleared for the canary's level


def test_gateway_misuse_binds_the_versions_it_names_and_the_customer(world: World) -> None:
    blocks = tuple(
        {
            "id": f"b{i}",
            "at": (NOW + timedelta(seconds=i)).isoformat(),
            "model": world.open_version.reference,
            "stage": "input",
            "rule": "bio-weapons",
            "excerpt": "<script>how to</script>",
        }
        for i in range(3)
    )
    alert = GatewayAlert(
        "gw-alert-1",
        NOW + timedelta(minutes=1),
        "repeated_blocks",
        "ab12cd34",
        "northlab",
        "3 requests blocked within 600 s from key ab12cd34",
        blocks,
    )
    item = sources.from_gateway_alert(alert, versions={world.open_version.reference: world.open_version.id})
    assert item.occurred_from == NOW and item.occurred_until == NOW + timedelta(seconds=2)
    assert item.aware_at == NOW + timedelta(minutes=1)
    (taken,) = world.take(item)
    found = world.services.raid.desk.get(world.caller("ana"), taken)
    assert {(b.kind, b.ref) for b in found.bindings} == {
        (BindingKind.MODEL_VERSION, world.open_version.id),
        (BindingKind.ORGANISATION, "northlab"),
    }
    assert found.evidence["blocks"][0]["excerpt"] == "<script>how to</script>"
    assert sources.from_gateway_alert(alert, versions={}).evidence["unresolved_models"] == [
        world.open_version.reference
    ]


def test_licence_breaches_trace_reports_and_risk_crossings(world: World) -> None:
    terms = Terms(
        world.sealed.id,
        world.sealed.reference,
        "northlab",
        ("research",),
        ("FR",),
        date(2026, 1, 1),
        date(2027, 1, 1),
        Funding(0, "EUR", Schedule.ONCE),
        3,
        False,
    )
    licence = Licence("0192f1c2-0000-7000-8000-0000000000aa", None, terms, LicenceState.ACTIVE, NOW, NOW)
    assert sources.from_licence_breach(licence) is None
    suspended = replace(licence, state=LicenceState.SUSPENDED, reason="weights seen on a forum", updated_at=NOW)
    breach = sources.from_licence_breach(suspended)
    assert breach is not None and {b.kind for b in breach.bindings} == set(BindingKind) - {BindingKind.ORGANISATION}
    report = {
        "id": "trace-1",
        "original": world.sealed.reference,
        "created_at": NOW.isoformat(),
        "accused": [{"organisation": "northlab", "copy_id": "c1", "z": "9.1"}],
        "scores": [{"organisation": "northlab", "licence_id": licence.id, "accused": True}],
        "verdict": "accused at z >= 6: northlab (z = 9.1)",
        "collusion": "one licensee's key scores above the threshold",
    }
    trace = sources.from_trace_report(report, versions={world.sealed.reference: world.sealed.id})
    assert trace is not None and (BindingKind.LICENSEE, "northlab") in {(b.kind, b.ref) for b in trace.bindings}
    assert sources.from_trace_report({**report, "accused": []}, versions={}) is None
    evidence = Evidence(
        "ev-1",
        EvidenceKind.RUN,
        world.open_version.id,
        NOW,
        "wmdp-bio",
        "wmdp-bio",
        RiskDomain.BIO,
        None,
        Estimate("accuracy", 0.62, 0.55, 0.69, 200),
        {},
        {},
        "ana",
    )
    profile = build_profile(world.open_version.id, world.open_version.reference, 1, NOW, [evidence])
    line = Threshold("bio-above-50", "bio knowledge above 50%", "accuracy", 0.5, domain=RiskDomain.BIO)
    (crossing,) = sources.from_risk_crossings(profile, [Crossing(line, "ev-1", 0.62, 0.55)])
    assert crossing.risk_domain is RiskDomain.BIO and crossing.aware_at == NOW
    taken = world.take(breach, trace, crossing)
    assert len(taken) == 3 and world.take(breach, trace, crossing) == []


def test_sharing_relabels_and_widens_by_role_and_red_stays_with_those_named(world: World) -> None:
    raid = world.services.raid
    ana, ben, carl = world.caller("ana"), world.caller("ben"), world.caller("carl")
    (item,) = world.take(world.alert(tlp=Tlp.AMBER_STRICT))
    with pytest.raises(Forbidden):
        raid.sharing.share(carl, item, tlp=Tlp.CLEAR)
    with pytest.raises(NotFound):
        raid.desk.get(carl, item)
    raid.sharing.share(ana, item, tlp=Tlp.GREEN)
    assert raid.desk.get(carl, item).tlp is Tlp.GREEN  # the community sees GREEN
    red = raid.sharing.share(ana, item, tlp=Tlp.RED)
    assert red.audience.principals == {"ana"}  # whoever labels it RED is named on it
    for outside in (carl, ben):
        with pytest.raises(NotFound):
            raid.desk.get(outside, item)
    with pytest.raises(NotFound):
        raid.sharing.share(ben, item, add_principals=["ben"])  # nobody names themselves into the exchange
    assert raid.sharing.share(ana, item, add_principals=["ben"]).audience.principals == {"ana", "ben"}
    with pytest.raises(InvalidInput, match="registered principal"):
        raid.sharing.share(ana, item, add_principals=["nobody"])
    raid.sharing.share(ben, item, tlp=Tlp.AMBER)
    (shared,) = [e for e in world.services.audit.list_events(limit=500) if e.details.get("tlp") == "amber"]
    assert shared.action == "raid.incident.shared" and shared.details["from"] == "red"


def bundle(*objects: dict[str, object]) -> bytes:
    return json.dumps(
        {"type": "bundle", "id": "bundle--6b5c9c33-1e5f-4b5f-8a2b-6e7f1f3f6b10", "objects": list(objects)}
    ).encode()


INCIDENT = {
    "type": "incident",
    "spec_version": "2.1",
    "id": "incident--5f2b7a1e-0c1d-4e4b-9a1e-1b2c3d4e5f60",
    "created": "2026-11-20T10:00:00.000Z",
    "modified": "2026-11-20T10:00:00.000Z",
    "name": "Partner sighting <script>x</script>",
    "description": "Weights offered for sale.",
    "object_marking_refs": [MARKING_IDS[Tlp.AMBER]],
}


def test_a_partners_bundle_is_imported_once_with_its_label(world: World) -> None:
    raid = world.services.raid
    pia = world.caller("pia")
    data = bundle(marking_definition(Tlp.AMBER), INCIDENT)
    result = raid.sharing.import_bundle(pia, data)
    (taken,) = result.taken
    found = raid.desk.get(world.caller("ana"), taken)
    assert found.tlp is Tlp.AMBER and found.title == INCIDENT["name"] and found.source.kind is SourceKind.STIX
    assert found.audience.organisations == {"northlab"} and found.reporter.principal == "pia"
    assert raid.sharing.import_bundle(pia, data).skipped == 1  # the same bundle again: nothing new
    plain = {k: v for k, v in INCIDENT.items() if k != "object_marking_refs"}
    unmarked = bundle({**plain, "id": "incident--5f2b7a1e-0c1d-4e4b-9a1e-1b2c3d4e5f61"})
    (second,) = raid.sharing.import_bundle(pia, unmarked).taken
    assert raid.desk.get(world.caller("ana"), second).tlp is Tlp.AMBER  # the routing table's default
    with pytest.raises(Forbidden):
        raid.sharing.import_bundle(world.caller("otto"), data)  # not affiliated with a member or partner state
    exported = raid.sharing.export(world.caller("ana"))
    assert "<script>" not in exported and "\\u003cscript\\u003e" in exported
    assert json.loads(exported)["objects"][-1]["name"].startswith("Partner sighting <script>")


@pytest.mark.parametrize(
    ("objects", "problem"),
    [
        ((INCIDENT, {"type": "x-aperture-secret", "id": "x-aperture-secret--1"}), "does not define"),
        ((INCIDENT, {"type": "incidnet", "id": "incidnet--1"}), "does not define"),
        (
            (
                {**marking_definition(Tlp.AMBER), "id": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b422"},
                INCIDENT,
            ),
            "wrong id",
        ),
        (({**marking_definition(Tlp.AMBER), "name": "TLP:GREEN"}, INCIDENT), "forged TLP"),
        (
            (
                {
                    **marking_definition(Tlp.RED),
                    "extensions": {TLP2_EXTENSION_ID: {"extension_type": "property-extension", "tlp_2_0": "clear"}},
                },
                INCIDENT,
            ),
            "forged TLP",
        ),
        (
            ({**INCIDENT, "object_marking_refs": ["marking-definition--00000000-0000-4000-8000-000000000000"]},),
            "does not define",
        ),
        (({**INCIDENT, "object_marking_refs": [MARKING_IDS[Tlp.AMBER], MARKING_IDS[Tlp.CLEAR]]},), "different TLP"),
        (({**INCIDENT, "object_marking_refs": [MARKING_IDS[Tlp.RED]]},), "TLP:RED"),
        (
            (
                {
                    **INCIDENT,
                    "extensions": {
                        "extension-definition--ef765651-680c-498d-9894-99799f2fa126": {
                            "extension_type": "property-extension",
                            "determination": "maybe",
                            "investigation_status": "open",
                        }
                    },
                },
            ),
            "not valid STIX",
        ),
        (({k: v for k, v in INCIDENT.items() if k != "name"},), "not valid STIX"),
    ],
)
def test_bad_bundles_are_refused_whole(world: World, objects: tuple[dict[str, object], ...], problem: str) -> None:
    raid = world.services.raid
    with pytest.raises(InvalidInput, match=problem):
        raid.sharing.import_bundle(world.caller("pia"), bundle(marking_definition(Tlp.CLEAR), *objects))
    assert raid.desk.count(SYSTEM) == 0


def test_not_json_and_oversized_bundles(world: World) -> None:
    raid = world.services.raid
    with pytest.raises(InvalidInput, match="not UTF-8 JSON"):
        raid.sharing.import_bundle(world.caller("pia"), b"\xff\xfe")
    with pytest.raises(TooLarge):
        raid.sharing.import_bundle(world.caller("pia"), b" " * (16 * 1024 * 1024 + 1))
    with pytest.raises(InvalidInput, match="not a STIX bundle"):
        raid.sharing.import_bundle(world.caller("pia"), b'{"type": "report"}')
    assert ANONYMOUS.principal == "anonymous"
