"""Pure rules beside the record: TLP, the routing table, embargoes, sharing with regulators, drafts,
attachment sniffing."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import tarfile
import zipfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib import resources

import pytest
import stix2

from aperture.core.errors import Conflict, InvalidInput, UnsafeInput
from aperture.raid import routing
from aperture.raid.clocks import ClockName
from aperture.raid.disclosure import (
    AdvisoryStatus,
    EmbargoPolicy,
    SharingPolicy,
    decide_early,
    embargo_until,
    extend,
    may_forward,
    new_advisory,
    notified,
    publish,
)
from aperture.raid.domain import Assessment, Consent, Detection, IntakeItem, Source, SourceKind, new_incident
from aperture.raid.drafts import MISSING, Form, draft
from aperture.raid.serious import Regime
from aperture.raid.sniff import display_name, sniff
from aperture.raid.taxonomy import Sector, Severity
from aperture.raid.tlp import (
    LEGACY_MARKING_IDS,
    MARKING_IDS,
    Audience,
    Tlp,
    Viewer,
    marking_definition,
    parse_tlp,
    visible,
)
from aperture.risk.domain import RiskDomain

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
SHIPPED = (resources.files("aperture.raid") / "data" / "routing.yaml").read_text(encoding="utf-8")

# --- TLP --------------------------------------------------------------------------------------

# The OASIS table (cti-stix-common-objects, extension-definition-specifications/tlp-2.0).
OASIS = {
    "TLP:RED": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
    "TLP:AMBER+STRICT": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "TLP:AMBER": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "TLP:GREEN": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "TLP:CLEAR": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
}


def test_marking_ids_and_names_are_the_official_ones() -> None:
    assert {tlp.label: MARKING_IDS[tlp] for tlp in Tlp} == OASIS
    for tlp in Tlp:
        definition = marking_definition(tlp)
        assert definition["name"] == tlp.label and definition["created"] == "2022-10-01T00:00:00.000Z"
    legacy = {stix2.TLP_WHITE.id: Tlp.CLEAR, stix2.TLP_GREEN.id: Tlp.GREEN, stix2.TLP_AMBER.id: Tlp.AMBER}
    assert legacy | {stix2.TLP_RED.id: Tlp.RED} == LEGACY_MARKING_IDS
    assert parse_tlp("tlp:amber+strict") is Tlp.AMBER_STRICT and parse_tlp("RED") is Tlp.RED
    with pytest.raises(InvalidInput, match=r"TLP 2\.0"):
        parse_tlp("TLP:WHITE")


NAMED = Audience(frozenset({"ana"}), frozenset({"northlab"}))


@pytest.mark.parametrize(
    ("tlp", "viewer", "expected"),
    [
        (Tlp.RED, Viewer("ana"), True),
        (Tlp.RED, Viewer("ben", desk=True, community=True), False),  # the desk is not named
        (Tlp.RED, Viewer("pia", organisation="northlab"), False),  # nor is the recipient organisation
        (Tlp.AMBER_STRICT, Viewer("ben", desk=True), True),
        (Tlp.AMBER_STRICT, Viewer("pia", organisation="northlab"), True),
        (Tlp.AMBER_STRICT, Viewer("kim", organisation="northlab-spinoff", client_of="northlab"), False),
        (Tlp.AMBER, Viewer("kim", organisation="northlab-spinoff", client_of="northlab"), True),
        (Tlp.AMBER, Viewer("carl", organisation="eastco", community=True), False),
        (Tlp.GREEN, Viewer("carl", organisation="eastco", community=True), True),
        (Tlp.GREEN, Viewer(None), False),
        (Tlp.CLEAR, Viewer(None), True),
        (Tlp.CLEAR, Viewer(None, hidden_versions=frozenset({"v4"})), False),  # clearance first, whatever the label
        (Tlp.RED, Viewer("ana", hidden_versions=frozenset({"v4"})), False),
    ],
)
def test_who_sees_an_item(tlp: Tlp, viewer: Viewer, expected: bool) -> None:
    assert visible(tlp, NAMED, ["v1", "v4"], viewer) is expected


# --- the routing table ------------------------------------------------------------------------


def test_the_shipped_table_parses_and_cites_its_sources() -> None:
    table = routing.parse_table(SHIPPED)
    assert table.version == 1 and table.default_tlp is Tlp.AMBER and len(table.rules) > 20
    assert all(rule.sources for rule in table.rules)
    for row in routing.describe(table):
        assert row["sources"] and row["legal_basis"]
        if row["clocks"]:
            assert row["verified"] in ("primary", "secondary")


def test_routing_a_cyber_incident_of_a_gpai_model_in_a_nis2_entity() -> None:
    table = routing.parse_table(SHIPPED)
    assessment = Assessment(
        severity=Severity.SERIOUS_INCIDENT,
        risk_domain=RiskDomain.CYBER_OFFENCE,
        sector=Sector.ENERGY,
        member_state="DE",
        regimes=frozenset({Regime.GPAI_SYSTEMIC_RISK, Regime.NIS2_ENTITY}),
    )
    matches = {m.rule_id: m for m in routing.route(table, assessment)}
    assert list(matches) == ["ai-office-gpai", "enisa-cyber", "nis2-csirt", "energy"]
    assert matches["nis2-csirt"].body == "national CSIRT or competent authority of DE"
    assert matches["ai-office-gpai"].clocks == (ClockName.COP_9_3,)
    assert matches["energy"].clocks == ()  # unverified: routes, sets no deadline


def test_ai_specific_risk_stays_with_raid_and_nothing_matched_falls_back_to_raid() -> None:
    table = routing.parse_table(SHIPPED)
    (autonomy,) = routing.route(table, Assessment(severity=Severity.HAZARD, risk_domain=RiskDomain.AUTONOMY))
    assert autonomy.raid_owned and autonomy.rule_id == "raid-ai-specific"
    (fallback,) = routing.route(table, Assessment(severity=Severity.HAZARD, sector=Sector.GENERAL))
    assert fallback.rule_id == "raid-default" and fallback.raid_owned
    (msa,) = routing.route(table, Assessment(severity=Severity.INCIDENT, regimes=frozenset({Regime.HIGH_RISK_SYSTEM})))
    assert msa.body == "market surveillance authority of the Member State where it occurred"


def bad(text: str) -> str:
    with pytest.raises(InvalidInput) as caught:
        routing.parse_table(text)
    return caught.value.message


def test_a_bad_routing_table_is_refused_naming_where_and_why() -> None:
    assert "routes[0].clocks[0]: unknown clock 'nis3'" in bad(SHIPPED.replace("clocks: [cop-9.3]", "clocks: [nis3]", 1))
    assert "unknown sector 'banking'" in bad(SHIPPED.replace("sectors: [finance]", "sectors: [banking]"))
    assert "unknown risk domain 'nukes'" in bad(
        SHIPPED.replace("risk_domains: [autonomy, persuasion]", "risk_domains: [nukes]")
    )
    maritime = "{sectors: [maritime]}"
    assert "not EU member states: XX" in bad(SHIPPED.replace(maritime, "{sectors: [maritime], member_states: [XX]}"))
    assert "YAML reads NO" in bad(SHIPPED.replace(maritime, "{sectors: [maritime], member_states: [NO]}"))
    assert "unknown source key(s) NOPE" in bad(SHIPPED.replace("sources: [DSA]", "sources: [NOPE]"))
    assert "used twice: finance" in bad(SHIPPED.replace("id: energy", "id: finance"))
    assert "unverified sets no legal deadline" in bad(
        SHIPPED.replace(
            "clocks: [nis2]\n    sources: [NIS2]\n    verified: secondary",
            "clocks: [nis2]\n    sources: [NIS2]\n    verified: unverified",
        )
    )
    assert "unknown key(s) colour" in bad(SHIPPED.replace("version: 1\n", "version: 1\ncolour: red\n"))
    assert "no hours for disaster" in bad(SHIPPED.replace("  disaster: 12\n", ""))
    assert "not valid YAML" in bad("version: [1")
    assert "fallback: missing" in bad(SHIPPED.split("fallback:")[0])
    assert "version: must be a whole number" in bad(SHIPPED.replace("version: 1\n", "version: one\n"))


# --- embargoes and disclosure -----------------------------------------------------------------


def test_embargo_defaults() -> None:
    assert embargo_until(EmbargoPolicy.CERT_CC, NOW) == NOW + timedelta(days=45)
    assert embargo_until(EmbargoPolicy.NONE, NOW) is None
    assert embargo_until(EmbargoPolicy.DAYS, NOW, days=10) == NOW + timedelta(days=10)
    with pytest.raises(InvalidInput):
        embargo_until(EmbargoPolicy.DAYS, NOW)
    p0 = EmbargoPolicy.PROJECT_ZERO
    assert embargo_until(p0, NOW) == NOW + timedelta(days=90)  # not fixed: published at the deadline
    assert embargo_until(p0, NOW, fixed_at=NOW + timedelta(days=50)) == NOW + timedelta(days=80)
    assert embargo_until(p0, NOW, fixed_at=NOW + timedelta(days=104), grace=True) == NOW + timedelta(days=120)
    assert embargo_until(p0, NOW, fixed_at=NOW + timedelta(days=100)) == NOW + timedelta(days=90)
    itw = EmbargoPolicy.PROJECT_ZERO_ITW
    assert embargo_until(itw, NOW) == NOW + timedelta(days=7)
    assert embargo_until(itw, NOW, fixed_at=NOW + timedelta(days=2)) == NOW + timedelta(days=32)


def advisory(embargo: datetime | None):  # type: ignore[no-untyped-def]
    return new_advisory(
        id="a",
        incident_id="i",
        title="Refusal bypass in open-1b",
        summary="A role-play prompt bypasses the refusal training.",
        remediation="",
        policy=EmbargoPolicy.CERT_CC,
        embargo=embargo,
        parties=("northlab",),
        by="ana",
        now=NOW,
    )


def test_publication_waits_for_the_embargo_or_a_recorded_decision() -> None:
    draft_ = advisory(NOW + timedelta(days=45))
    with pytest.raises(Conflict, match="draft"):
        publish(draft_, NOW + timedelta(days=60))  # the affected parties were not told
    told = notified(draft_, NOW)
    with pytest.raises(Conflict, match="embargo runs until"):
        publish(told, NOW + timedelta(days=44))
    assert publish(told, NOW + timedelta(days=45)).status is AdvisoryStatus.PUBLISHED
    early = decide_early(told, "dora", "actively exploited", NOW + timedelta(days=3))
    assert publish(early, NOW + timedelta(days=3)).published_at == NOW + timedelta(days=3)
    with pytest.raises(Conflict, match="no public date"):
        publish(notified(advisory(None), NOW), NOW + timedelta(days=999))
    with pytest.raises(Conflict, match="only extended"):
        extend(told, NOW + timedelta(days=10), NOW)
    assert extend(told, NOW + timedelta(days=60), NOW).embargo_until == NOW + timedelta(days=60)


@pytest.mark.parametrize(
    ("required", "consent", "policy", "allowed", "identity"),
    [
        (True, Consent.LEGAL_MINIMUM, SharingPolicy.CONSENT, True, False),
        (True, Consent.FULL, SharingPolicy.CONSENT, True, True),
        (True, Consent.FULL, SharingPolicy.LEGAL_MINIMUM, True, False),
        (False, Consent.LEGAL_MINIMUM, SharingPolicy.CONSENT, False, False),
        (False, Consent.ANONYMISED, SharingPolicy.CONSENT, True, False),
        (False, Consent.FULL, SharingPolicy.CONSENT, True, True),
        (False, Consent.FULL, SharingPolicy.LEGAL_MINIMUM, False, False),
    ],
)
def test_what_goes_to_regulators_follows_the_law_the_consent_and_the_policy(
    required: bool, consent: Consent, policy: SharingPolicy, allowed: bool, identity: bool
) -> None:
    decision = may_forward(required, consent, policy)
    assert (decision.allowed, decision.with_identity) == (allowed, identity) and decision.reason


# --- drafts -----------------------------------------------------------------------------------


def test_drafts_mark_missing_items_missing() -> None:
    found = new_incident(
        IntakeItem(
            source=Source(SourceKind.DESK),
            title="Refusal bypass",
            summary="summary",
            tlp=Tlp.AMBER,
            aware_at=NOW,
            detection=Detection.HUMAN_REVIEW,
            occurred_from=NOW - timedelta(days=2),
        ),
        id="i",
        now=NOW,
    )
    found = replace(found, facts=found.facts.with_values({"harm": "misinformation", "response": "filter updated"}))
    initial = draft(Form.COP_INITIAL, found, {})
    assert [f.number for f in initial.fields] == ["1", "2", "3", "4", "5", "6", "7"]
    assert initial.missing == ("3", "4", "5", "7")
    assert "3. chain of events: MISSING" in initial.text() and initial.text().startswith("TLP:AMBER\n")
    final = draft(Form.COP_FINAL, found, {})
    assert [f.number for f in final.fields][-2:] == ["8", "9"] and "8" in final.missing
    assert draft(Form.NIS2_EARLY_WARNING, found, {}).missing == ("a.1", "a.2")
    nis2_final = draft(Form.NIS2_FINAL, found, {})
    assert nis2_final.fields[0].value is not None and nis2_final.as_dict()["missing"] == ["d.ii", "d.iii", "d.iv"]
    assert initial.fields[0].value == f"from 2026-11-22 to ongoing or unknown ({MISSING})"  # the end is marked missing
    assert json.loads(json.dumps(initial.as_dict()))["fields"][2] == {
        "item": "3",
        "label": "chain of events",
        "value": None,
        "missing": True,
    }


# --- attachments ------------------------------------------------------------------------------


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", "hello")
    return buffer.getvalue()


def _tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("a.txt")
        info.size = 5
        archive.addfile(info, io.BytesIO(b"hello"))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (_zip(), "ZIP archive"),
        (_tar(), "tar archive"),
        (gzip.compress(b"hello"), "gzip"),
        (b"\x7fELF\x02\x01\x01" + b"\x00" * 64, "ELF executable"),
        (b"MZ\x90\x00" + b"\x00" * 60, "Windows executable"),
        (b"#!/bin/sh\nrm -rf /\n", "a script"),
        (pickle.dumps({"a": 1}), "pickle"),
        (pickle.dumps({"a": 1}, protocol=0), "pickle"),
        (b"cos\nsystem\n(S'echo owned'\ntR.", "pickle"),
        (b"\x93NUMPY\x01\x00", "NumPy"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 32, "OLE"),
        (b"\x00\x01\x02binary", "binary data"),
    ],
)
def test_archives_executables_and_pickles_are_refused_by_content(data: bytes, what: str) -> None:
    with pytest.raises(UnsafeInput, match=what):
        sniff(data)


def test_accepted_attachments() -> None:
    assert sniff(b"%PDF-1.7\n...").media_type == "application/pdf"
    assert sniff(b"\x89PNG\r\n\x1a\n....").media_type == "image/png"
    assert sniff(b'{"prompt": "x"}').media_type == "application/json"
    assert sniff("<script>alert(1)</script> plain words, é".encode()).media_type == "text/plain"
    assert display_name("../../etc/passwd") == "passwd" and display_name("C:\\x\\r\x00e.txt") == "re.txt"
    assert display_name("...") == "attachment"
