"""Coordinated disclosure: advisories under embargo, parties told privately, publication as CSAF."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from aperture.access.domain import ANONYMOUS, SYSTEM
from aperture.core.errors import Conflict, Forbidden, NotFound
from aperture.raid import csaf
from aperture.raid.disclosure import AdvisoryStatus, EmbargoPolicy
from aperture.raid.messages import MessageKind
from aperture.raid.tlp import Tlp
from tests.raid.world import World


def test_an_advisory_under_embargo_is_told_privately_then_published_as_csaf(world: World) -> None:
    raid = world.services.raid
    ana = world.caller("ana")
    (item,) = world.take(world.alert(organisations=["northlab"]))
    raid.sharing.share(ana, item, add_organisations=["northlab"])
    advisory = raid.disclosure.draft(
        ana,
        item,
        title="Refusal bypass in <em>open-1b</em>",
        summary="A role-play prompt bypasses refusals.",
        remediation="Update the safety policy.",
        parties=["eastco"],
    )
    aware = raid.desk.get(ana, item).aware_at
    assert advisory.embargo_until == aware + timedelta(days=45)  # type: ignore[operator]  # CERT/CC by default
    assert advisory.status is AdvisoryStatus.DRAFT and advisory.parties == ("eastco",)
    with pytest.raises(Conflict, match="no contact address for eastco"):
        raid.disclosure.notify(ana, advisory.id)
    assert raid.outbox.messages(SYSTEM) == []  # nobody was told: all or none
    raid.routing.save_contact(ana, "eastco", "psirt@eastco.example")
    told = raid.disclosure.notify(ana, advisory.id)
    assert told.status is AdvisoryStatus.EMBARGOED
    (message,) = raid.outbox.messages(SYSTEM)
    assert message.kind is MessageKind.ADVISORY and message.subject.startswith("[TLP:AMBER+STRICT]")
    with pytest.raises(Conflict, match="embargo runs until"):
        raid.disclosure.publish(ana, advisory.id)
    assert raid.disclosure.published() == []
    with pytest.raises(NotFound):
        raid.disclosure.csaf(advisory.id)  # not public before publication
    world.clock.advance(timedelta(days=46))
    published = raid.disclosure.publish(ana, advisory.id)
    assert published.status is AdvisoryStatus.PUBLISHED
    assert [a.id for a in raid.disclosure.published()] == [advisory.id]
    text = raid.disclosure.csaf(advisory.id)
    assert "<em>" not in text  # escaped for any page it is pasted into
    document = json.loads(text)
    assert csaf.problems(document) == []
    assert document["document"]["title"] == "Refusal bypass in <em>open-1b</em>"
    assert document["document"]["distribution"]["tlp"]["label"] == "WHITE"
    assert document["document"]["tracking"]["id"] == f"aperture-raid-{advisory.id}"
    with pytest.raises(Conflict):
        raid.disclosure.publish(ana, advisory.id)


def test_early_publication_only_by_a_recorded_decision_of_the_right_role(world: World) -> None:
    raid = world.services.raid
    ana, dora = world.caller("ana"), world.caller("dora")
    (item,) = world.take(world.alert())
    advisory = raid.disclosure.draft(
        ana, item, title="Dual-use uplift", summary="s", policy=EmbargoPolicy.NONE, parties=["northlab"]
    )
    assert advisory.embargo_until is None
    raid.routing.save_contact(ana, "northlab", "security@northlab.example")
    raid.disclosure.notify(ana, advisory.id)
    with pytest.raises(Conflict, match="no public date"):
        raid.disclosure.publish(ana, advisory.id)
    with pytest.raises(Forbidden):
        raid.disclosure.decide_early(ana, advisory.id, "exploited in the wild")  # the desk alone may not
    decided = raid.disclosure.decide_early(dora, advisory.id, "exploited in the wild")
    assert decided.early is not None and decided.early.by.startswith("dora")
    published = raid.disclosure.publish(ana, advisory.id)
    notes = json.loads(raid.disclosure.csaf(published.id))["document"]["notes"]
    assert any("before the embargo ended" in note["title"] for note in notes)
    (event,) = [e for e in world.services.audit.list_events(limit=500) if e.action == "raid.advisory.published"]
    assert event.details["early"] is True
    assert "exploited in the wild" not in repr(world.services.audit.list_events(limit=500))  # reasons stay internal


def test_the_embargo_is_extended_never_shortened_quietly(world: World) -> None:
    raid = world.services.raid
    ana = world.caller("ana")
    (item,) = world.take(world.alert())
    advisory = raid.disclosure.draft(ana, item, title="t", summary="s", policy=EmbargoPolicy.PROJECT_ZERO)
    assert advisory.embargo_until is not None
    later = raid.disclosure.extend(ana, advisory.id, advisory.embargo_until + timedelta(days=14))
    assert later.embargo_until == advisory.embargo_until + timedelta(days=14)
    with pytest.raises(Conflict, match="only extended"):
        raid.disclosure.extend(ana, advisory.id, advisory.embargo_until)
    with pytest.raises(Forbidden):
        raid.disclosure.draft(world.caller("carl"), item, title="t", summary="s")
    with pytest.raises(NotFound):
        raid.disclosure.get(ANONYMOUS, advisory.id)
    assert raid.desk.get(ana, item).tlp is Tlp.AMBER_STRICT
