"""The base of every websocket consumer: an unreadable frame gets an error event, not a dead socket.

An exception escaping a Channels handler ends the consumer's task while the socket stays
open, so a client would be left talking to nothing. Every frame is decoded and checked
here (text, size, JSON, no NUL or lone surrogates, an object, bounded nesting) before a
subclass sees it, and a failure inside a handler is logged and answered, never fatal.
"""

from __future__ import annotations

import logging
from typing import Any

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from apps.core.exceptions import WardenError
from apps.core.jsonlimits import JsonRefused, json_loads_limited

logger = logging.getLogger("warden.websocket")

# Close codes in the 4000 range are the application's own (RFC 6455 §7.4.2).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_THROTTLED = 4429

MAX_FRAME_DEPTH = 32


class InvalidFrame(WardenError):
    code = "invalid_frame"


def decode_frame(text_data: str | None, bytes_data: bytes | None) -> dict[str, Any]:
    """The frame as a JSON object, or `InvalidFrame` saying what is wrong with it."""
    if text_data is None:
        if bytes_data is None:
            raise InvalidFrame("Empty frame.")
        try:
            text_data = bytes_data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidFrame("Binary frame is not UTF-8 JSON.") from None
    limit = settings.WARDEN_WS_MAX_FRAME_BYTES
    if len(text_data.encode("utf-8", "surrogatepass")) > limit:
        raise InvalidFrame(f"Frame is larger than {limit} bytes.")
    try:
        # The same decoder as REST bodies: bounded depth, no NUL or lone surrogates.
        content = json_loads_limited(text_data, max_depth=MAX_FRAME_DEPTH)
    except JsonRefused as exc:
        raise InvalidFrame(f"Frame refused: {exc.message}") from None
    if not isinstance(content, dict):
        raise InvalidFrame('A frame must be a JSON object such as {"type": "ping"}.')
    return content


class JsonFrameConsumer(AsyncJsonWebsocketConsumer):
    """Decodes frames defensively; subclasses implement `receive_json` and may raise WardenError."""

    def error_message(
        self, code: str, message: str, details: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"code": code, "message": message}
        if details:
            data["details"] = details
        return {"event": "error", "data": data}

    async def send_error(
        self, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        await self.send_json(self.error_message(code, message, details))

    async def layer_batch(self, message: dict[str, Any]) -> None:
        """Several messages the publisher sent as one (apps/core/events.py): each in turn."""
        for each in message["messages"]:
            await self.dispatch(each)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        try:
            content = decode_frame(text_data, bytes_data)
        except InvalidFrame as exc:
            await self.send_error(exc.code, exc.message)
            return
        try:
            await self.receive_json(content, **kwargs)
        except WardenError as exc:
            details = dict(exc.details)
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None:
                details.setdefault("retry_after", retry_after)
            await self.send_error(exc.code, exc.message, details)
        except StopConsumer:
            raise
        except Exception:
            logger.exception("websocket handler failed")
            await self.send_error("internal_error", "The message could not be handled.")
