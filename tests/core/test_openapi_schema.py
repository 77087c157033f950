"""What the OpenAPI schema says, checked where a reader of the schema would look.

tests/core/test_openapi_contract.py proves the live server keeps these promises.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.core.openapi import served_schema

API = "/api/v1"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return served_schema()


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_lists_are_documented_as_pages(spec: dict[str, Any]) -> None:
    operation = spec["paths"][f"{API}/agents"]["get"]
    page = _resolve(spec, operation["responses"]["200"]["content"]["application/json"]["schema"])
    assert set(page["properties"]) == {"count", "next", "previous", "results"}
    assert page["properties"]["results"]["type"] == "array"
    assert {p["name"] for p in operation["parameters"]} == {"page", "page_size"}
    assert "404" in operation["responses"]  # a page past the last


def test_every_operation_documents_its_errors_in_the_error_shape(spec: dict[str, Any]) -> None:
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["code", "message"]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert {"400", "401", "403", "429"} <= set(responses), (method, path)
            if "{" in path:
                assert "404" in responses, (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    body = response["content"]["application/json"]["schema"]
                    assert body == {"$ref": "#/components/schemas/Error"}, (method, path, status)
    throttled = spec["paths"][f"{API}/me"]["get"]["responses"]["429"]
    assert "Retry-After" in throttled["headers"]


def test_conflicts_and_backpressure_are_documented_where_views_raise_them(
    spec: dict[str, Any],
) -> None:
    turns = spec["paths"][f"{API}/sessions/{{session_id}}/turns"]["post"]["responses"]
    assert "409" in turns and "503" in turns
    assert "turn_backlog_full" in turns["503"]["description"]
    discover = spec["paths"][f"{API}/mcp-servers/{{server_id}}/discover"]["post"]["responses"]
    assert "502" in discover
    # A read raises no conflict: none is documented.
    assert "409" not in spec["paths"][f"{API}/agents/{{agent_id}}"]["get"]["responses"]


def test_strict_request_bodies_are_closed(spec: dict[str, Any]) -> None:
    bodies = {
        name: schema
        for name, schema in spec["components"]["schemas"].items()
        if name.endswith("Request")
    }
    assert bodies
    for name, schema in bodies.items():
        assert schema["additionalProperties"] is False, name
    agent = bodies["AgentInputRequest"]["properties"]
    assert agent["name"]["pattern"]  # not blank once trimmed
    scopes = bodies["ApiKeyCreateRequest"]["properties"]["scopes"]
    assert scopes["minItems"] == 1
    price = bodies["EndpointInputRequest"]["properties"]["price_input_per_mtok"]
    assert price["pattern"] == r"^\d{1,8}(?:\.\d{1,4})?$"


def test_the_event_stream_is_documented(spec: dict[str, Any]) -> None:
    operation = spec["paths"][f"{API}/sessions/{{session_id}}/events"]["get"]
    assert set(operation["responses"]["200"]["content"]) == {"text/event-stream"}
    parameters = {(p["in"], p["name"]) for p in operation["parameters"]}
    assert {
        ("path", "session_id"),
        ("header", "Last-Event-ID"),
        ("query", "last_event_id"),
        ("query", "follow"),
    } == parameters
    assert (
        operation["security"] == spec["paths"][f"{API}/sessions/{{session_id}}"]["get"]["security"]
    )
