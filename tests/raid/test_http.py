"""The RAID HTTP API through the real server: a public report and its receipt, bounded input with
the JSON error shape, the queue and one item for the desk, the desk's changes, and a TLP:RED item
invisible, title included, on every route to anyone not named on it (hidden reads exactly like
absent)."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from aperture.access.domain import SYSTEM
from aperture.raid.tlp import Tlp
from aperture.testing.server import running_server
from aperture.web.app import create_app
from tests.raid.world import World

API = "/api/v1/raid"
RED_TITLE = "RED-c0ffee: a jailbreak only ana may know of"


@dataclass
class Site:
    world: World
    url: str
    keys: dict[str, str]

    def client(self, name: str) -> httpx.Client:
        headers = {} if name == "public" else {"Authorization": f"Bearer {self.keys[name]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


@pytest.fixture
def site(world: World) -> Iterator[Site]:
    services = world.services
    keys = {}
    for name in ("ana", "ben", "pia"):
        roles = services.access.get_principal(name).roles
        keys[name] = services.access.issue_key(SYSTEM, name=f"{name} key", principal=name, roles=roles).text
    with running_server(create_app(services)) as url:
        yield Site(world, url, keys)


def report_body(**changes: Any) -> dict[str, Any]:
    return {"title": "The model gives dosing advice", "description": "Asked twice, answered twice."} | changes


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert {"code", "message", "hint"} <= set(body["error"])
    error: dict[str, Any] = body["error"]
    return error


def test_a_public_report_gets_a_receipt_to_follow_up_and_add_information(site: Site) -> None:
    with site.client("public") as public:
        answer = public.post(f"{API}/reports", json=report_body(contact="me@example.org"))
        assert answer.status_code == 201, answer.text
        receipt = answer.json()
        assert receipt["receipt"].startswith("rct_")
        assert receipt["follow_up"] == f"{API}/reports/{receipt['receipt']}"
        seen = public.get(f"{API}/reports/{receipt['receipt']}")
        assert seen.status_code == 200, seen.text
        assert seen.json()["status"] == "new"
        assert seen.json()["title"] == "The model gives dosing advice"
        added = public.post(f"{API}/reports/{receipt['receipt']}/information", json={"text": "A third time today."})
        assert added.status_code == 201, added.text
        assert [a["text"] for a in added.json()["additions"]] == ["A third time today."]
        # A wrong receipt and a robot's (honeypot) receipt read the same.
        robot = public.post(f"{API}/reports", json=report_body(website="http://spam.example"))
        assert robot.status_code == 201
        wrong = "rct_" + "A" * 43
        answers = [public.get(f"{API}/reports/{r}") for r in (wrong, robot.json()["receipt"])]
        assert [a.status_code for a in answers] == [404, 404]
        assert answers[0].json() == answers[1].json()
        assert public.get(f"{API}/reports/not-a-receipt").status_code == 422
    with site.client("ana") as ana:
        item = ana.get(f"{API}/incidents/{receipt['incident_id']}")
        assert item.status_code == 200, item.text
        assert item.json()["source"]["kind"] == "public"
        assert [e["kind"] for e in item.json()["timeline"]][:1] == ["received"]
        assert "me@example.org" not in item.text  # the contact stays in the store
        titles = [i["title"] for i in ana.get(f"{API}/incidents").json()["items"]]
        assert titles.count("The model gives dosing advice") == 1  # the robot's report was not kept


def file(name: str, data: bytes) -> dict[str, str]:
    return {"name": name, "content_base64": base64.b64encode(data).decode()}


def test_attachments_go_with_a_report_and_its_information_and_come_back_only_as_downloads(site: Site) -> None:
    note = b"<script>alert(1)</script> the transcript"
    with site.client("public") as public:
        answer = public.post(f"{API}/reports", json=report_body(attachments=[file("../../etc/chat.txt", note)]))
        assert answer.status_code == 201, answer.text
        receipt, incident_id = answer.json()["receipt"], answer.json()["incident_id"]
        image = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
        added = public.post(f"{API}/reports/{receipt}/information", json={"attachments": [file("shot.png", image)]})
        assert added.status_code == 201, added.text
        assert [(a["name"], a["media_type"]) for a in added.json()["attachments"]] == [
            ("chat.txt", "text/plain"),
            ("shot.png", "image/png"),
        ]
        refused = [
            public.post(f"{API}/reports", json=report_body(attachments=[file("a.txt", b"x")] * 6)),
            public.post(f"{API}/reports", json=report_body(attachments=[{"name": "a", "content_base64": "%%%"}])),
            public.post(f"{API}/reports", json=report_body(attachments=[file("run", b"\x7fELF" + b"\0" * 60)])),
        ]
        assert [r.status_code for r in refused] == [422, 422, 422], [r.text for r in refused]
        assert "base64" in error_of(refused[1])["message"]
        error_of(refused[2])
    digest = hashlib.sha256(note).hexdigest()
    with site.client("ana") as ana:
        item = ana.get(f"{API}/incidents/{incident_id}").json()
        assert [a["sha256"] for a in item["attachments"]][:1] == [digest]
        download = ana.get(f"{API}/incidents/{incident_id}/attachments/{digest}")
        assert download.status_code == 200
        assert download.content == note
        assert download.headers["content-type"] == "application/octet-stream"
        assert download.headers["content-disposition"] == 'attachment; filename="chat.txt"'
        assert download.headers["x-content-type-options"] == "nosniff"
        assert ana.get(f"{API}/incidents/{incident_id}/attachments/{'0' * 64}").status_code == 404
        assert ana.get(f"{API}/incidents/{incident_id}/attachments/../../x").status_code in (404, 422)
        assert ana.get(f"{API}/incidents/{incident_id}/attachments/{'z' * 64}").status_code == 422
        titles = [i["title"] for i in ana.get(f"{API}/incidents").json()["items"]]
        assert titles.count("The model gives dosing advice") == 1  # the refused reports left nothing


def test_oversized_or_unknown_fields_are_refused_with_the_error_shape_and_write_nothing(site: Site) -> None:
    with site.client("ana") as ana:
        before = ana.get(f"{API}/incidents").json()["total"]
    with site.client("public") as public:
        for body, where in (
            (report_body(title="x" * 201), "body.title"),
            (report_body(description="x" * 20_001), "body.description"),
            (report_body(contact="x" * 321), "body.contact"),
            (report_body(models=["m"] * 51), "body.models"),
            (report_body(recipients=["r" * 64]), "body.recipients.0"),
            (report_body(title=""), "body.title"),
            (report_body(occurred_from="2026-01-01T00:00:00"), "body.occurred_from"),
            (report_body(admin=True), "body.admin"),
        ):
            answer = public.post(f"{API}/reports", json=body)
            assert answer.status_code == 422, (where, answer.text)
            error = error_of(answer)
            assert error["code"] == "invalid_input"
            assert where in [d["where"] for d in error["details"]], error
        # What pydantic cannot see, the service refuses, in the same shape.
        answer = public.post(f"{API}/reports", json=report_body(tlp="TLP:PURPLE"))
        assert answer.status_code == 422
        assert "TLP 2.0" in error_of(answer)["message"]
        red = public.post(f"{API}/reports", json=report_body(tlp="TLP:RED"))
        assert red.status_code == 422 and "recipients" in error_of(red)["message"]
        too_long = public.post(f"{API}/reports/rct_{'A' * 43}/information", json={"text": "x" * 20_001})
        assert too_long.status_code == 422
    with site.client("ana") as ana:
        assert ana.get(f"{API}/incidents").json()["total"] == before
        for params in (
            {"limit": "0"},
            {"limit": "501"},
            {"offset": "-1"},
            {"status": "lost"},
            {"status": ["new"] * 21},
            {"tlp": "x" * 21},
            {"search": "x" * 201},
            {"version": "not-a-version-id"},
        ):
            answer = ana.get(f"{API}/incidents", params=params)
            assert answer.status_code == 422, (params, answer.text)
            error_of(answer)
        assert ana.get(f"{API}/incidents/not-an-id").status_code == 422
        assert ana.get(f"{API}/due", params={"within_hours": "0"}).status_code == 422


def test_the_desk_reads_the_queue_and_moves_an_item(site: Site) -> None:
    world = site.world
    (taken,) = world.take(world.alert(title="Gateway misuse at night"))
    with site.client("ana") as ana:
        queue = ana.get(f"{API}/incidents", params={"status": "new", "limit": "10"})
        assert queue.status_code == 200, queue.text
        assert taken in [i["id"] for i in queue.json()["items"]]
        assert queue.json()["limit"] == 10
        searched = ana.get(f"{API}/incidents", params={"search": "at night"}).json()
        assert [i["id"] for i in searched["items"]] == [taken] and searched["total"] == 1
        assessed = ana.post(f"{API}/incidents/{taken}/assessment", json={"severity": "incident"})
        assert assessed.status_code == 200, assessed.text
        assert assessed.json()["severity"] == "incident"
        moved = ana.post(f"{API}/incidents/{taken}/moves", json={"move": "triage"})
        assert moved.status_code == 200, moved.text
        assert moved.json()["status"] == "triaged"
        refused = ana.post(f"{API}/incidents/{taken}/moves", json={"move": "close"})
        assert refused.status_code == 409 and "allowed now" in error_of(refused)["hint"]
        assigned = ana.post(f"{API}/incidents/{taken}/assignee", json={"analyst": "ben"})
        assert assigned.status_code == 200, assigned.text
        assert assigned.json()["assignee"] == "ben"
        item = ana.get(f"{API}/incidents/{taken}").json()
        assert [e["kind"] for e in item["timeline"]] == ["received", "assessed", "moved", "assigned"]
        assert ana.get(f"{API}/incidents/{taken}/obligations").status_code == 200
        assert ana.get(f"{API}/due").status_code == 200
        assert ana.get(f"{API}/counts").json().get("triaged") == 1
    with site.client("pia") as pia:  # not the desk: triage is refused and nothing changes
        refused = pia.post(f"{API}/incidents/{taken}/moves", json={"move": "investigate"})
        assert refused.status_code in (403, 404)
        error_of(refused)
    assert site.world.services.raid.desk.get(SYSTEM, taken).status.value == "triaged"


def test_a_red_item_is_invisible_to_anyone_not_named_and_hidden_reads_as_absent(site: Site) -> None:
    world = site.world
    (red,) = world.take(world.alert(title=RED_TITLE, tlp=Tlp.RED, named=["ana"]))
    (clear,) = world.take(world.alert(title="A public note", tlp=Tlp.CLEAR))
    missing = str(uuid.uuid4())

    def answer_for(client: httpx.Client, incident_id: str) -> tuple[int, str]:
        response = client.get(f"{API}/incidents/{incident_id}")
        return response.status_code, response.text.replace(incident_id, "ID")

    for name in ("public", "pia", "ben"):  # the public, a member not named, a desk analyst not named
        with site.client(name) as client:
            hidden = answer_for(client, red)
            assert hidden == answer_for(client, missing), name
            assert hidden[0] == 404 and json.loads(hidden[1])["error"]["message"] == "no RAID item ID"
            queue = client.get(f"{API}/incidents", params={"limit": "500"})
            assert queue.status_code == 200
            assert red not in queue.text and RED_TITLE not in queue.text
            assert clear in [i["id"] for i in queue.json()["items"]]
            assert queue.json()["total"] == len(queue.json()["items"])
            searched = client.get(f"{API}/incidents", params={"search": "RED-c0ffee"}).json()
            assert searched == {"total": 0, "limit": 50, "offset": 0, "items": []}
            assert client.get(f"{API}/incidents", params={"tlp": "TLP:RED"}).json()["total"] == 0
            counts = client.get(f"{API}/counts").json()
            assert sum(counts.values()) == queue.json()["total"]
            for path in (f"/incidents/{red}/obligations", f"/incidents/{missing}/obligations"):
                assert RED_TITLE not in client.get(f"{API}{path}").text
            download = [client.get(f"{API}/incidents/{i}/attachments/{'0' * 64}") for i in (red, missing)]
            assert download[0].status_code == download[1].status_code == 404
            assert download[0].text.replace(red, "ID") == download[1].text.replace(missing, "ID")
            for target in (red, missing):  # changing it reads the same too
                change = client.post(f"{API}/incidents/{target}/moves", json={"move": "decline", "reason": "x"})
                assert RED_TITLE not in change.text
            export = client.get(f"{API}/export.stix")
            assert RED_TITLE not in export.text and red not in export.text
            if name == "ben":
                assert export.status_code == 200
                assert export.headers["content-type"].startswith("application/stix+json")
                assert export.json()["type"] == "bundle"
            else:
                assert export.status_code in (401, 403)
                error_of(export)
    with site.client("public") as public:  # the public: 404 on the item, 401 on the desk's routes
        assert public.get(f"{API}/export.stix").status_code == 401
    with site.client("ben") as ben:
        hidden = ben.post(f"{API}/incidents/{red}/moves", json={"move": "decline", "reason": "x"})
        absent = ben.post(f"{API}/incidents/{missing}/moves", json={"move": "decline", "reason": "x"})
        assert (hidden.status_code, hidden.text.replace(red, "ID")) == (
            absent.status_code,
            absent.text.replace(missing, "ID"),
        )
        assert hidden.status_code == 404
    with site.client("ana") as ana:  # named on it: it is there, everywhere
        item = ana.get(f"{API}/incidents/{red}")
        assert item.status_code == 200 and item.json()["title"] == RED_TITLE
        assert item.json()["tlp"] == "TLP:RED"
        assert red in [i["id"] for i in ana.get(f"{API}/incidents", params={"tlp": "red"}).json()["items"]]
        assert ana.get(f"{API}/incidents", params={"search": "RED-c0ffee"}).json()["total"] == 1
        assert RED_TITLE in ana.get(f"{API}/export.stix").text
    assert world.services.raid.desk.get(world.caller("ana"), red).status.value == "new"
