"""Who sees what: the SQL condition equals the pure TLP rule, and a TLP:RED item is invisible, title
included, to anyone not named on it, on every surface."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from aperture.access.domain import ANONYMOUS, SYSTEM
from aperture.core.errors import NotFound
from aperture.core.ids import new_id
from aperture.raid import store
from aperture.raid.domain import Move
from aperture.raid.drafts import Form
from aperture.raid.serious import CausalLink, Harm, Regime
from aperture.raid.taxonomy import Sector, Severity
from aperture.raid.tlp import Tlp, Viewer, visible
from tests.raid.world import World

PRINCIPALS = ["ana", "ben", "pia", "kim", "carl", "otto"]
ORGANISATIONS = ["northlab", "institute", "northlab-spinoff", "eastco"]
VERSIONS = ["v-one", "v-two", "v-three"]


def population(world: World, seed: int = 7, size: int = 160) -> list[str]:
    rng = random.Random(seed)
    items = []
    for _ in range(size):
        tlp = rng.choice(list(Tlp))
        named = rng.sample(PRINCIPALS, rng.randint(1 if tlp is Tlp.RED else 0, 3))
        items.append(
            world.alert(
                tlp=tlp,
                named=named,
                organisations=rng.sample(ORGANISATIONS, rng.randint(0, 2)),
                versions=rng.sample(VERSIONS, rng.randint(0, 2)),
            )
        )
    return world.take(*items)


viewers = st.builds(
    Viewer,
    principal=st.none() | st.sampled_from(PRINCIPALS),
    organisation=st.none() | st.sampled_from(ORGANISATIONS),
    client_of=st.none() | st.sampled_from(ORGANISATIONS),
    desk=st.booleans(),
    community=st.booleans(),
    hidden_versions=st.frozensets(st.sampled_from(VERSIONS)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(viewer=viewers)
def test_the_query_shows_exactly_what_the_rule_allows(world: World, viewer: Viewer) -> None:
    with world.services.database.read() as connection:
        ids = list(connection.execute(select(store.raid_incidents.c.id)).scalars())
    if not ids:
        ids = population(world)
    with world.services.database.read() as connection:
        everything = [store.load_incident(connection, key) for key in ids]
        expected = {i.id for i in everything if i is not None and visible(i.tlp, i.audience, i.versions(), viewer)}
        shown = {i.id for i in store.list_incidents(connection, viewer, store.Filter(), limit=1000)}
        counted = store.count_incidents(connection, viewer, store.Filter())
    assert len(ids) == 160 and shown == expected and counted == len(expected)


def test_red_is_invisible_to_anyone_not_named_on_every_surface(world: World) -> None:
    raid = world.services.raid
    ana, ben, carl = world.caller("ana"), world.caller("ben"), world.caller("carl")
    (red,) = world.take(world.alert(title="Zeppelin codename leak", tlp=Tlp.RED, named=["ana"], summary="Zeppelin"))
    (amber,) = world.take(world.alert(title="Ordinary amber", tlp=Tlp.AMBER))
    (green,) = world.take(world.alert(title="Community green", tlp=Tlp.GREEN))
    (clear,) = world.take(world.alert(title="Public clear", tlp=Tlp.CLEAR))
    raid.desk.assess(
        ana,
        red,
        severity=Severity.SERIOUS_INCIDENT,
        sector=Sector.DIGITAL_INFRASTRUCTURE,
        member_state="FR",
        harms=[Harm.CYBER_BREACH],
        causal_link=CausalLink.ESTABLISHED,
        regimes=[Regime.GPAI_SYSTEMIC_RISK, Regime.NIS2_ENTITY],
    )
    raid.routing.route(ana, red)
    advisory = raid.disclosure.draft(ana, red, title="Zeppelin advisory", summary="Zeppelin")
    assert {i.id for i in raid.desk.queue(ana).items} == {red, amber, green, clear}

    # lists, counts, search
    assert {i.id for i in raid.desk.queue(ben).items} == {amber, green, clear}
    assert raid.desk.queue(ben).total == 3 and raid.desk.count(ben) == 3
    assert sum(raid.desk.counts(ben).values()) == 3
    assert raid.desk.queue(ben, store.Filter(search="Zeppelin")).total == 0
    assert raid.desk.queue(ana, store.Filter(search="zeppelin")).total == 1
    assert raid.desk.queue(ben, store.Filter(tlps=("red",))).items == ()
    assert {i.id for i in raid.desk.queue(carl).items} == {green, clear}
    assert {i.id for i in raid.desk.queue(ANONYMOUS).items} == {clear}
    # exports
    bundle = raid.sharing.export(ben)
    assert "Zeppelin" not in bundle and red not in bundle and "Ordinary amber" in bundle
    assert "Zeppelin" in raid.sharing.export(ana)
    # the clocks dashboard and advisories
    assert raid.routing.due(ana, within=timedelta(days=90))
    assert raid.routing.due(ben, within=timedelta(days=90)) == []
    assert raid.disclosure.advisories(ben) == [] and len(raid.disclosure.advisories(ana)) == 1
    # errors: the same answer as for an item that does not exist
    nowhere = new_id()
    surfaces = [
        lambda key: raid.desk.get(ben, key),
        lambda key: raid.desk.timeline(ben, key),
        lambda key: raid.desk.attachments(ben, key),
        lambda key: raid.desk.assess(ben, key, severity=Severity.HAZARD),
        lambda key: raid.desk.move(ben, key, Move.DECLINE, reason="no"),
        lambda key: raid.desk.assign(ben, key, "ben"),
        lambda key: raid.desk.record_facts(ben, key, {"harm": "x"}),
        lambda key: raid.routing.route(ben, key),
        lambda key: raid.routing.draft(ben, key, Form.COP_INITIAL),
        lambda key: raid.routing.obligations(ben, key),
        lambda key: raid.sharing.share(ben, key, tlp=Tlp.CLEAR),
        lambda key: raid.disclosure.draft(ben, key, title="t", summary="s"),
        lambda key: raid.desk.move(ben, amber, Move.MERGE, reason="same", into=key),
    ]
    for surface in surfaces:
        with pytest.raises(NotFound) as hidden:
            surface(red)
        with pytest.raises(NotFound) as absent:
            surface(nowhere)
        assert hidden.value.message.replace(red, "ID") == absent.value.message.replace(nowhere, "ID")
        assert "Zeppelin" not in hidden.value.message + hidden.value.hint
    with pytest.raises(NotFound) as hidden_advisory:
        raid.disclosure.get(ben, advisory.id)
    with pytest.raises(NotFound) as absent_advisory:
        raid.disclosure.get(ben, nowhere)
    assert hidden_advisory.value.message.replace(advisory.id, "ID") == absent_advisory.value.message.replace(
        nowhere, "ID"
    )
    # the log keeps titles and texts out, and marks the RED item's events upper-tier
    events = world.services.audit.list_events(limit=500)
    assert "Zeppelin" not in repr(events)
    # the operator is not named either
    with pytest.raises(NotFound):
        raid.desk.get(SYSTEM, red)


def test_clearance_for_every_concerned_version_comes_first(world: World) -> None:
    raid = world.services.raid
    (item,) = world.take(world.alert(tlp=Tlp.CLEAR, versions=[world.sealed.id, world.open_version.id]))
    (named,) = world.take(world.alert(tlp=Tlp.RED, named=["ben", "ana"], versions=[world.sealed.id]))
    assert raid.desk.get(world.caller("ana"), item).versions() == tuple(
        sorted([world.sealed.id, world.open_version.id])
    )
    for who in ("ben", "carl", "public"):
        with pytest.raises(NotFound):
            raid.desk.get(world.caller(who), item)
    with pytest.raises(NotFound):  # named on it, but not cleared for the version it concerns
        raid.desk.get(world.caller("ben"), named)
    assert raid.desk.get(world.caller("ana"), named).id == named


def test_amber_reaches_the_recipient_organisations_clients_and_amber_strict_does_not(world: World) -> None:
    raid = world.services.raid
    (amber,) = world.take(world.alert(tlp=Tlp.AMBER, organisations=["northlab"]))
    (strict,) = world.take(world.alert(tlp=Tlp.AMBER_STRICT, organisations=["northlab"]))
    kim, pia = world.caller("kim"), world.caller("pia")  # kim's organisation is a client of northlab
    assert {i.id for i in raid.desk.queue(pia).items} == {amber, strict}
    assert {i.id for i in raid.desk.queue(kim).items} == {amber}
    assert raid.desk.get(kim, amber).reporter.principal is None  # outside the desk: no reporter, no evidence
