"""Advisory locks on the Django connection: namespaces keep kinds of work apart, a key excludes
a second holder on another connection, and the lock goes when its holder lets go."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import TypeVar

import pytest
from django.db import connection

from apps.core.locks import LockNamespace, advisory_lock, advisory_unlocked, lock_key

pytestmark = pytest.mark.django_db(transaction=True)

T = TypeVar("T")


def on_other_connection(fn: Callable[[], T]) -> T:
    """Run `fn` on another thread, so on another database connection (as another worker)."""
    result: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the other connection hung"
    if errors:
        raise errors[0]
    return result[0]


def try_lock(namespace: LockNamespace, ident: uuid.UUID) -> bool:
    with advisory_lock(namespace, ident) as held:
        return held


def test_a_second_holder_of_the_same_key_is_refused_until_the_first_lets_go() -> None:
    ident = uuid.uuid4()
    with advisory_lock(LockNamespace.SESSION, ident) as held:
        assert held
        assert on_other_connection(lambda: try_lock(LockNamespace.SESSION, ident)) is False
    assert on_other_connection(lambda: try_lock(LockNamespace.SESSION, ident)) is True


def test_a_session_lock_and_a_tool_job_lock_with_the_same_id_do_not_block_each_other() -> None:
    ident = uuid.uuid4()
    with advisory_lock(LockNamespace.SESSION, ident) as held:
        assert held
        assert on_other_connection(lambda: try_lock(LockNamespace.TOOL_JOB, ident)) is True
    with advisory_lock(LockNamespace.TOOL_JOB, ident) as held:
        assert held
        assert on_other_connection(lambda: try_lock(LockNamespace.SESSION, ident)) is True


def test_nested_on_the_same_thread_is_not_held_twice() -> None:
    # Postgres advisory locks are re-entrant per connection; inner code must not believe it
    # took a lock that its own caller holds (and then release it under the caller's feet).
    ident = uuid.uuid4()
    with advisory_lock(LockNamespace.TOOL_JOB, ident) as outer:
        with advisory_lock(LockNamespace.TOOL_JOB, ident) as inner:
            assert (outer, inner) == (True, False)
        assert on_other_connection(lambda: try_lock(LockNamespace.TOOL_JOB, ident)) is False
    assert on_other_connection(lambda: try_lock(LockNamespace.TOOL_JOB, ident)) is True


def test_unlocked_lists_only_ids_nobody_holds_and_takes_none_of_them() -> None:
    busy, free = uuid.uuid4(), uuid.uuid4()
    with advisory_lock(LockNamespace.SESSION, busy):
        found = on_other_connection(lambda: advisory_unlocked(LockNamespace.SESSION, [busy, free]))
        assert found == {free}
        # Same ids, other namespace: nothing held there.
        other = on_other_connection(lambda: advisory_unlocked(LockNamespace.TOOL_JOB, [busy]))
        assert other == {busy}
    # The check released what it took: both can be taken now.
    assert on_other_connection(lambda: try_lock(LockNamespace.SESSION, free)) is True
    assert advisory_unlocked(LockNamespace.SESSION, []) == set()


def test_pg_locks_shows_the_namespace_in_the_high_byte() -> None:
    ident = uuid.uuid4()
    with advisory_lock(LockNamespace.TOOL_JOB, ident), connection.cursor() as cursor:
        cursor.execute(
            "SELECT classid::bigint, objid::bigint FROM pg_locks "
            "WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
        rows = cursor.fetchall()
    assert len(rows) == 1
    classid, objid = rows[0]
    assert classid >> 24 == LockNamespace.TOOL_JOB
    assert (classid << 32) | objid == lock_key(LockNamespace.TOOL_JOB, ident)


def test_every_namespace_fits_in_the_high_byte_of_a_positive_bigint() -> None:
    ident = uuid.UUID(int=(1 << 128) - 1)
    for namespace in LockNamespace:
        assert 0 < namespace < 128
        assert 0 < lock_key(namespace, ident) < 1 << 63
