"""The base of every websocket consumer: an unreadable frame gets an error event, not a dead socket.

An exception escaping a Channels handler ends the consumer's task while the socket stays
open, so a client would be left talking to nothing. Every frame is decoded and checked
here (text, size, JSON, no NUL or lone surrogates, an object, bounded nesting) before a
subclass sees it, and a failure inside a handler is logged and answered, never fatal.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from apps.core.exceptions import WardenError

logger = logging.getLogger("warden.websocket")

# Close codes in the 4000 range are the application's own (RFC 6455 §7.4.2).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404

MAX_FRAME_DEPTH = 32


class InvalidFrame(WardenError):
    code = "invalid_frame"


def _check_value(value: Any) -> None:
    """Refuse NUL, lone surrogates and deep nesting, without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_FRAME_DEPTH:
            raise InvalidFrame(f"Frame nests deeper than {MAX_FRAME_DEPTH} levels.")
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict):
            for key, inner in item.items():
                _check_text(key)
                stack.append((inner, depth + 1))
        elif isinstance(item, list):
            stack.extend((inner, depth + 1) for inner in item)


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise InvalidFrame("Frame contains a NUL character.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidFrame("Frame contains a lone surrogate.") from None


def decode_frame(text_data: str | None, bytes_data: bytes | None) -> dict[str, Any]:
    """The frame as a JSON object, or `InvalidFrame` saying what is wrong with it."""
    if text_data is None:
        if bytes_data is None:
            raise InvalidFrame("Empty frame.")
        try:
            text_data = bytes_data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidFrame("Binary frame is not UTF-8 JSON.") from None
    _check_text(text_data)
    limit = settings.WARDEN_WS_MAX_FRAME_BYTES
    if len(text_data.encode("utf-8")) > limit:
        raise InvalidFrame(f"Frame is larger than {limit} bytes.")
    try:
        content = json.loads(text_data)
    except RecursionError:
        raise InvalidFrame(f"Frame nests deeper than {MAX_FRAME_DEPTH} levels.") from None
    except ValueError as exc:
        raise InvalidFrame(f"Frame is not JSON: {exc}.") from None
    if not isinstance(content, dict):
        raise InvalidFrame('A frame must be a JSON object such as {"type": "ping"}.')
    # json.loads turns escapes like "\u0000" and "\ud800" into the characters themselves.
    _check_value(content)
    return content


class JsonFrameConsumer(AsyncJsonWebsocketConsumer):
    """Decodes frames defensively; subclasses implement `receive_json` and may raise WardenError."""

    def error_message(self, code: str, message: str) -> dict[str, Any]:
        return {"event": "error", "data": {"code": code, "message": message}}

    async def send_error(self, code: str, message: str) -> None:
        await self.send_json(self.error_message(code, message))

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
            await self.send_error(exc.code, exc.message)
        except StopConsumer:
            raise
        except Exception:
            logger.exception("websocket handler failed")
            await self.send_error("internal_error", "The message could not be handled.")
