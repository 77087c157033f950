"""The session event stream in the OpenAPI schema.

`GET /api/v1/sessions/{session_id}/events` is a plain async Django view (apps/agents/api/sse.py:
DRF can't stream Server-Sent Events), so drf-spectacular does not see it. This postprocessing
hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]) writes its operation into the schema by hand;
tests/core/test_openapi_contract.py holds the view to it like every other operation.
"""

from __future__ import annotations

from typing import Any, get_args

from apps.agents.events import MAX_EVENT_ID, EventType
from apps.core.api.schema import error_response_object

PATH = "/api/v1/sessions/{session_id}/events"

_EVENT_ID = {"type": "integer", "minimum": 0, "maximum": MAX_EVENT_ID}

# One Server-Sent Event as it is read off the wire (OpenAPI 3.0 has no way to describe the
# JSON inside `data`; the operation's description does).
_EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": list(get_args(EventType))},
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "Durable events only."},
        "data": {
            "type": "string",
            "description": 'JSON: {"id": <event id or null>, "event": <type>, "turn": '
            '<turn id or null>, "data": {…}}',
        },
        "retry": {"type": "integer", "minimum": 0},
    },
}

_DESCRIPTION = """\
The session's events as Server-Sent Events (`text/event-stream`): first the stored events after
the resume point, then live ones until the client leaves (unless `follow=false`).

Each event has `event: <type>` and `data: {"id", "event", "turn", "data"}`; durable events also
have `id: <event id>`, the resume point to send back as `Last-Event-ID`. Types:
`turn.accepted|started|waiting|completed|failed|cancelled`, `step.rationale`, `step.malformed`,
`model.called`, `model.token` (live only; for identities that may read private reasoning),
`tool.call`, `tool.progress`, `tool.result`, `policy.denied`, and `error` (code
`principal_revoked` when the credential or access ends; the stream then ends). Comments
(`: keep-alive`) keep idle connections open.

Needs the `session.read` permission, like `GET /sessions/{session_id}`."""


def _operation(security: list[dict[str, list[str]]]) -> dict[str, Any]:
    return {
        "operationId": "sessions_events_stream",
        "summary": "Stream the session's events (Server-Sent Events)",
        "description": _DESCRIPTION,
        "tags": ["sessions"],
        "parameters": [
            {
                "name": "session_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "format": "uuid"},
            },
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "description": "Resume after this event id (what EventSource sends on "
                "reconnecting). Wins over `last_event_id`.",
                "schema": _EVENT_ID,
            },
            {
                "name": "last_event_id",
                "in": "query",
                "required": False,
                "description": "Resume after this event id, for clients that can't set headers.",
                "schema": _EVENT_ID,
            },
            {
                "name": "follow",
                "in": "query",
                "required": False,
                "description": "false: send the stored events, then end the stream.",
                "schema": {"type": "boolean", "default": True},
            },
        ],
        "security": security,
        "responses": {
            "200": {
                "description": "The event stream. The schema describes one event.",
                "content": {"text/event-stream": {"schema": _EVENT}},
            },
            "400": error_response_object(
                400,
                "`invalid_last_event_id`, `invalid_follow`, or `invalid_characters` (a NUL in "
                "the query string).",
            ),
            "401": error_response_object(401),
            "403": error_response_object(403),
            "404": error_response_object(404),
            "429": error_response_object(429),
            "503": error_response_object(503),
        },
    }


def add_session_events(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: add the SSE operation (same security as the
    session it streams)."""
    session = result.get("paths", {}).get("/api/v1/sessions/{session_id}", {}).get("get", {})
    security = session.get("security", [{"apiKey": []}, {"oidcJwt": []}, {"consoleSession": []}])
    result.setdefault("paths", {}).setdefault(PATH, {})["get"] = _operation(security)
    return result
