"""The OpenAPI document at /api/v1/openapi.json: FastAPI's, made self-contained and true to the errors.

FastAPI documents the request models it sees; `finish_document` adds what it cannot see and
corrects what it gets wrong:
- the `/v1` gateway's request bodies (its handlers read them themselves), as components that its
  operations refer to;
- the error shapes: every `/api/v1` refusal is `{"error": {"code", "message", "hint"}}` (a
  validation error adds `details`, the fields at fault), never FastAPI's `{"detail": [...]}`; the
  `/v1` gateway answers in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`;
- the bearer API key that authenticates callers.

tests/web/test_openapi.py validates the whole document and fuzzes every operation against it.
"""

from __future__ import annotations

from typing import Any

ERROR = "Error"
OPENAI_ERROR = "OpenAIError"
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")

ERROR_SCHEMAS: dict[str, dict[str, Any]] = {
    ERROR: {
        "title": ERROR,
        "description": "A refusal or a failure: what went wrong (`message`) and how to fix it (`hint`).",
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "hint"],
                "properties": {
                    "code": {"type": "string", "description": "stable, for programs: `invalid_input`, `not_found`"},
                    "message": {"type": "string"},
                    "hint": {"type": "string", "description": "the fix; may be empty"},
                    "details": {
                        "description": "an invalid request: the fields at fault; otherwise facts about the error",
                        "anyOf": [
                            {"type": "object"},
                            {"type": "array", "items": {"$ref": "#/components/schemas/Problem"}},
                        ],
                    },
                },
            }
        },
    },
    "Problem": {
        "title": "Problem",
        "type": "object",
        "required": ["where", "problem"],
        "properties": {
            "where": {"type": "string", "description": "the field, as `body.name` or `query.limit`"},
            "problem": {"type": "string"},
        },
    },
    OPENAI_ERROR: {
        "title": OPENAI_ERROR,
        "description": "The OpenAI-compatible gateway's error: the hint is part of `message`.",
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                    "code": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                },
            }
        },
    },
}


def _error_response(schema: str) -> dict[str, Any]:
    return {
        "description": "Refused: the error names the problem and the fix",
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def finish_document(document: dict[str, Any], extra_schemas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Add `extra_schemas` and the error shapes to `document`'s components, and document each
    operation's refusals (in place; returns `document`)."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in _FASTAPI_VALIDATION:
        schemas.pop(name, None)
    for name, schema in {**ERROR_SCHEMAS, **extra_schemas}.items():
        if name in schemas:
            raise ValueError(f"two schemas are named {name!r} in the OpenAPI document")
        schemas[name] = schema
    components.setdefault("securitySchemes", {})["apiKey"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key (`aperture keys issue`); some routes answer anonymous callers too",
    }
    for path, item in document.get("paths", {}).items():
        shape = OPENAI_ERROR if path.startswith("/v1/") else ERROR
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = {**_error_response(shape), "description": "The request is not valid"}
            responses.setdefault("4XX", _error_response(shape))
            operation.setdefault("security", [{"apiKey": []}, {}])
    return document
