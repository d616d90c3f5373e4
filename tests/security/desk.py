"""The security tests' running desk: the real app served by uvicorn on a loopback port, over the
world of `tests.security.world`, with a clock tests can move and helpers to call it as anyone."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

from aperture.access.domain import SYSTEM
from tests.licensing.world import SteppingClock
from tests.security.world import World

__all__ = ["PASSWORD", "Desk", "SteppingClock", "refused"]

PASSWORD = "correct horse battery staple"


@dataclass
class Desk:
    world: World
    clock: SteppingClock
    url: str
    admin: dict[str, str]

    @property
    def services(self) -> Any:
        return self.world.services

    def key(self, name: str, **extra: Any) -> dict[str, str]:
        principal = self.services.access.get_principal(name)
        issued = self.services.access.issue_key(
            SYSTEM, name=f"{name}-key", principal=name, roles=principal.roles, **extra
        )
        return {"Authorization": f"Bearer {issued.text}"}

    def api(self, method: str, path: str, who: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}/api/v1{path}", headers=who or {}, timeout=30, **kw)

    def events(self, action: str) -> list[Any]:
        """Every audit event with this action, oldest first."""
        found: list[Any] = []
        before: int | None = None
        while page := self.services.audit.list_events(limit=500, before=before):
            found.extend(e for e in page if e.action == action)
            before = page[-1].leaf_index
        return found[::-1]

    def browser(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, follow_redirects=False)


def refused(response: httpx.Response, status: int, code: str, *words: str) -> dict[str, str]:
    """A JSON error with the status and code, a message naming the problem and a hint."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, str] = response.json()["error"]
    assert error["code"] == code and error["message"] and error["hint"], error
    for word in words:
        assert word in error["message"], (word, error["message"])
    return error


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def _sign_in(client: httpx.Client, name: str, password: str, next_page: str = "/security") -> httpx.Response:
    token = _csrf(client.get(f"/login?next={next_page}"))
    return client.post("/login", data={"name": name, "password": password, "csrf": token, "next": next_page})
