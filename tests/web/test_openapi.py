"""The OpenAPI document at /api/v1/openapi.json is valid and true (issue 19, item 11).

- The document passes a real validator (`openapi-spec-validator`) and every `$ref` in it points at
  a schema of its own components.
- A schema-driven fuzzer (schemathesis) calls every operation of the document on the real server
  (uvicorn on a loopback port), with valid and invalid inputs, as an anonymous visitor, a
  low-clearance member (SL1) and an administrator: no answer is a 5xx, and every 4xx is in the
  documented error shape (`{"error": {"code", "message", "hint"}}`, or OpenAI's
  `{"error": {"message", "type", "param", "code"}}` on the `/v1` gateway).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis import GenerationMode

from aperture.access.domain import SYSTEM, PrincipalKind, Role, SecurityLevel
from aperture.bootstrap import build_services, init_instance
from aperture.core.errors import InvalidInput
from aperture.settings import Settings
from aperture.testing.server import running_server
from aperture.web.app import create_app
from tests.conftest import Instance

CALLERS = ("anonymous", "member", "administrator")
# Per operation and caller, valid and invalid inputs mixed; a longer hunt sets APERTURE_FUZZ_EXAMPLES.
EXAMPLES = int(os.environ.get("APERTURE_FUZZ_EXAMPLES", "10"))


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_the_document_is_valid_and_self_contained(instance: Instance) -> None:
    document = create_app(instance.services).openapi()
    validate(json.loads(json.dumps(document)))  # as served: JSON, not Python objects
    schemas = document["components"]["schemas"]
    prefix = "#/components/schemas/"
    unresolved = sorted(
        {ref for ref in _refs(document) if not (ref.startswith(prefix) and ref[len(prefix) :] in schemas)}
    )
    assert unresolved == []
    # The gateway's request bodies are components too, and the refusals are documented as they are.
    chat = document["paths"]["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"] == {"$ref": prefix + "ChatBody"}
    assert {"Message", "TextPart", "StreamOptions", "Error", "OpenAIError"} <= set(schemas)
    assert "HTTPValidationError" not in schemas
    patch = document["paths"]["/api/v1/principals/{name}"]["patch"]["responses"]
    assert patch["422"]["content"]["application/json"]["schema"] == {"$ref": prefix + "Error"}


def test_an_empty_organisation_is_refused_and_changes_nothing(instance: Instance) -> None:
    access = instance.services.access
    access.add_principal(SYSTEM, "mia", kind=PrincipalKind.PERSON)
    with pytest.raises(InvalidInput, match="organisation is empty") as refused:
        access.update_principal(SYSTEM, "mia", organisation="", disabled=True)
    assert "add-organisation" in refused.value.hint
    with pytest.raises(InvalidInput, match="organisation is empty"):
        access.add_principal(SYSTEM, "max", organisation=" ")
    assert not access.get_principal("mia").disabled
    assert "max" not in {p.name for p in access.list_principals()}
    with running_server(create_app(instance.services)) as url:
        answer = requests.patch(
            f"{url}/api/v1/principals/mia",
            json={"organisation": ""},
            headers={"Authorization": f"Bearer {instance.admin_key}"},
            timeout=10,
        )
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_input"
    assert "organisation is empty" in answer.json()["error"]["message"]


def test_numbers_beyond_64_bits_are_refused_as_invalid_input(instance: Instance) -> None:
    huge = 2**64
    paths = (
        f"/api/v1/audit/events/{huge}",
        f"/api/v1/audit/events?before={huge}",
        f"/api/v1/audit/proofs/inclusion/0?tree_size={huge}",
        f"/api/v1/audit/proofs/inclusion/{huge}",
        f"/api/v1/audit/proofs/consistency?first={huge}",
        f"/api/v1/models/open-1b/versions/1.0/risk-profile?profile_version={huge}",
    )
    headers = {"Authorization": f"Bearer {instance.admin_key}"}
    with running_server(create_app(instance.services)) as url:
        for path in paths:
            answer = requests.get(url + path, headers=headers, timeout=10)
            assert answer.status_code == 422, (path, answer.text)
            assert answer.json()["error"]["code"] == "invalid_input"
            assert "less than or equal to" in answer.json()["error"]["message"]


# --- the fuzz ----------------------------------------------------------------------------------


@dataclass
class Fuzzed:
    url: str
    headers: dict[str, dict[str, str]]  # by caller


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    home: Path = tmp_path_factory.mktemp("fuzz")
    services = build_services(Settings(home=home / "home", hash_workers=1))
    try:
        admin = init_instance(services)
        services.access.add_principal(
            SYSTEM, "mia", kind=PrincipalKind.PERSON, clearance=SecurityLevel.SL1, roles=(Role.RESEARCHER,)
        )
        member = services.access.issue_key(SYSTEM, name="mia", principal="mia", roles=(Role.RESEARCHER,))
        headers = {
            "anonymous": {},
            "member": {"Authorization": f"Bearer {member.text}"},
            "administrator": {"Authorization": f"Bearer {admin.text}"},
        }
        with running_server(create_app(services)) as url:
            yield Fuzzed(url, headers)
    finally:
        services.close()


@pytest.fixture(scope="module")
def api_schema(fuzzed: Fuzzed) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{fuzzed.url}/api/v1/openapi.json", config=schemathesis.Config())


def _in_error_shape(path: str, body: Any) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return False
    fields = ("message", "type", "param", "code") if path.startswith("/v1/") else ("code", "message", "hint")
    return all(name in error for name in fields) and isinstance(error["message"], str)


def _problem(case: schemathesis.Case, answer: Any, fuzzed: Fuzzed, caller: str) -> str | None:
    """What is wrong with `answer` to `case`, with the curl line that repeats it; None when nothing."""
    if answer.status_code < 400:
        return None
    if answer.status_code < 500:
        try:
            body = answer.json()
        except ValueError:
            body = None
        if _in_error_shape(case.operation.path, body):
            return None
    reproduce = case.as_curl_command(headers=fuzzed.headers[caller], base_url=fuzzed.url)
    return f"{case.operation.label}: {answer.status_code} {answer.text[:300]}\n    {reproduce}"


@pytest.mark.parametrize("caller", CALLERS)
def test_every_operation_answers_without_a_server_error(
    api_schema: schemathesis.BaseSchema, fuzzed: Fuzzed, caller: str
) -> None:
    problems: list[str] = []
    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 80  # the whole document, the /v1 gateway included
    with requests.Session() as session:
        for operation in operations:
            cases = st.one_of(
                operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
            )

            @given(case=cases)
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def call(case: schemathesis.Case) -> None:
                answer = case.call(base_url=fuzzed.url, headers=fuzzed.headers[caller], session=session, timeout=30)
                statuses[answer.status_code // 100] += 1
                problem = _problem(case, answer, fuzzed, caller)
                if problem is not None:
                    problems.append(problem)

            call()
    assert problems == [], "\n".join(dict.fromkeys(problems))
    assert statuses[2] and statuses[4], statuses  # some calls got through, some were refused
    if caller == "administrator":  # the fuzz reached the routes as the administrator throughout
        whoami = requests.get(f"{fuzzed.url}/api/v1/whoami", headers=fuzzed.headers[caller], timeout=10)
        assert whoami.status_code == 200, whoami.text
