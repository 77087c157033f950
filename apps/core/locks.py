"""PostgreSQL advisory locks, held on a Django database connection, in namespaces.

A lock is taken on this thread's Django connection for the alias — the pooled connection
the holder goes on to write with — so it honours the database settings (OPTIONS such as
sslmode, application_name), costs no extra connection, and shares its writes' fate: when the
process or just that connection dies, the server drops the lock at once, and "nobody holds
the lock" means "nobody is doing this work any more". The pool's reset hook
(config/settings/database.py) unlocks everything a connection still holds when it goes back.

Keys are namespaced, so two kinds of work never share a key: the namespace is the key's
high byte and a 56-bit hash of the id the rest. In `pg_locks` a lock shows as
`classid >> 24` = the namespace (`objid` and the low bits of `classid` are the hash).

These are *session-level* locks: a holder keeps one across the many transactions it commits
(a turn commits at every checkpoint). They need a server connection that stays the holder's
for the whole time: a direct connection, or PgBouncer (or any pooler) in **session** pooling
mode. Under transaction pooling the lock would stay behind on a server connection that other
clients' transactions use next, and the unlock could run on a different one: exclusion
breaks and locks leak. Transaction-level locks (`pg_try_advisory_xact_lock`) would survive
transaction pooling, but they end at the first commit — too soon for a turn or a tool job.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import threading
import uuid
from collections.abc import Iterable, Iterator

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections


class LockNamespace(enum.IntEnum):
    """Every kind of work that takes advisory locks has its number here (1-127), so no two
    kinds ever share a key. Never renumber one: a worker of the previous release would take
    other keys than this one's for the same work."""

    SESSION = 1  # one turn per agent session at a time (apps.agents.orchestrator)
    TOOL_JOB = 2  # one worker per long-running tool job (apps.agents.jobs)


_HASH_BITS = 56


def lock_key(namespace: LockNamespace, ident: uuid.UUID) -> int:
    """The bigint key of `ident`'s lock in `namespace` (positive: the namespace is < 128)."""
    digest = hashlib.blake2b(ident.bytes, digest_size=_HASH_BITS // 8).digest()
    return (int(namespace) << _HASH_BITS) | int.from_bytes(digest, "big")


# Keys this thread holds, per database alias. Advisory locks are re-entrant per connection
# and a thread has one connection per alias: without this, code nested on the same thread
# would "take" a lock the thread already holds, as if it were free.
_held = threading.local()


def _held_here() -> set[tuple[str, int]]:
    keys: set[tuple[str, int]] | None = getattr(_held, "keys", None)
    if keys is None:
        keys = _held.keys = set()
    return keys


@contextlib.contextmanager
def advisory_lock(
    namespace: LockNamespace, ident: uuid.UUID, *, using: str = DEFAULT_DB_ALIAS
) -> Iterator[bool]:
    """Try to take `ident`'s lock in `namespace`, without waiting; yields whether we hold it.

    Released when the block ends. Not held (False) when another connection holds it, or
    when this thread already does further up the stack.
    """
    key = lock_key(namespace, ident)
    held_here = _held_here()
    if (using, key) in held_here:
        yield False
        return
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        row = cursor.fetchone()
    if not (row and row[0]):
        yield False
        return
    held_here.add((using, key))
    try:
        yield True
    finally:
        held_here.discard((using, key))
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        except DatabaseError:
            # The connection is broken, and the lock went with it on the server. Drop the
            # connection so nothing hands it out again.
            connection.close()


def advisory_unlocked(
    namespace: LockNamespace, idents: Iterable[uuid.UUID], *, using: str = DEFAULT_DB_ALIAS
) -> set[uuid.UUID]:
    """The ids among these whose lock nobody holds now (each taken and released at once, in
    one round trip each way)."""
    keys = {lock_key(namespace, ident): ident for ident in idents}
    if not keys:
        return set()
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT k FROM unnest(%s::bigint[]) AS k WHERE pg_try_advisory_lock(k)", [list(keys)]
        )
        free = [row[0] for row in cursor.fetchall()]
        if free:
            cursor.execute("SELECT pg_advisory_unlock(k) FROM unnest(%s::bigint[]) AS k", [free])
    return {keys[k] for k in free}
