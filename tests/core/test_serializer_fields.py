"""FieldsBuiltOnce: the fields are built once per class, and each serializer still owns its own."""

from __future__ import annotations

import threading
import uuid

from django.utils import timezone
from rest_framework import serializers

from apps.agents.api.serializers import TurnSerializer
from apps.agents.models import AgentSession, Turn


def _turn(message: str) -> Turn:
    session = AgentSession(id=uuid.uuid4(), tenant_id=uuid.uuid4())
    return Turn(
        id=uuid.uuid4(),
        session=session,
        tenant_id=session.tenant_id,
        seq=3,
        status="queued",
        user_message=message,
        created_at=timezone.now(),
    )


class _Plain(serializers.ModelSerializer):
    """TurnSerializer's model fields as DRF builds them for every instance."""

    class Meta:
        model = Turn
        fields = [f for f in TurnSerializer.Meta.fields if f not in TurnSerializer._declared_fields]


def test_each_serializer_has_its_own_fields_with_what_drf_would_build() -> None:
    first, second = _turn("one"), _turn("two")
    a = TurnSerializer(first, context={"unredacted": True})
    b = TurnSerializer(second, context={"unredacted": True})
    assert a.fields.keys() == b.fields.keys()
    for name in a.fields:
        assert a.fields[name] is not b.fields[name]
        assert a.fields[name].parent is a and b.fields[name].parent is b
    for serializer, turn in ((a, first), (b, second)):
        expected = _Plain(turn).data
        data = serializer.data
        assert {k: data[k] for k in expected} == expected
        assert data["session"] == str(turn.session_id)


def test_serializers_made_on_many_threads_at_once_do_not_mix_their_turns() -> None:
    turns = [_turn(f"message {i}") for i in range(16)]
    seen: dict[int, dict[str, object]] = {}
    start = threading.Barrier(len(turns))

    def serialize(index: int) -> None:
        start.wait()
        seen[index] = dict(TurnSerializer(turns[index], context={"unredacted": True}).data)

    threads = [threading.Thread(target=serialize, args=(i,)) for i in range(len(turns))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [seen[i]["user_message"] for i in range(len(turns))] == [t.user_message for t in turns]
    assert [seen[i]["id"] for i in range(len(turns))] == [str(t.id) for t in turns]
