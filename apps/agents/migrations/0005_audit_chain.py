"""Hash-chain the session event log, in the database (apps/agents/audit.py has the reader).

Every event row is sealed by a deferred constraint trigger as its transaction commits: it
locks the session's chain head, numbers the row (`chain_seq`), links it (`prev_hash`) and
hashes it (`hash` = sha256 of the canonical text below). The database does it, so every
writer — the ORM, the turn's multi-statement batches, raw SQL — is chained the same way,
one writer per session at a time, with no extra round trip.

Why at commit and not in a BEFORE INSERT trigger: the head lock is then the last lock a
transaction takes. Taken at the INSERT, it would be held while the writer goes on to lock
other rows — and writers lock in different orders (a turn's batch writes its events, then
updates the session row; POST /turns locks the session row, then writes its event): a
deadlock between a finishing turn and the next message.

Existing events are chained in id order per session. Sealed rows can't be updated (only
the sealing trigger itself may); rows are deleted only with their session (or turn, or
tenant), and `audit verify` reports any other gap.
"""

import django.db.models.deletion
from django.db import migrations, models


# The canonical text of an event (hashed as UTF-8): ten lines joined by "\n", in order
#   warden-audit-v1 | prev_hash (64 "0" for the first) | tenant id | session id | chain_seq |
#   event id | turn id ("" when none) | created_at (UTC, YYYY-MM-DDTHH:MM:SS.ffffffZ) |
#   type | payload as PostgreSQL prints jsonb (payload::text).
# Only `type` could hold a newline, and it sits between fixed-count lines: the text is
# unambiguous. apps/agents/audit.py computes the same text in Python.
FUNCTIONS = r"""
CREATE FUNCTION agents_event_canonical(
    prev text, tenant uuid, session uuid, seq bigint, event_id bigint, turn uuid,
    created timestamptz, kind text, payload jsonb
) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT concat_ws(E'\n', 'warden-audit-v1', prev, tenant::text, session::text, seq::text,
        event_id::text, coalesce(turn::text, ''),
        to_char(created AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        kind, payload::text)
$$;

CREATE FUNCTION agents_event_hash(canonical text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(sha256(convert_to(canonical, 'UTF8')), 'hex')
$$;

CREATE FUNCTION agents_sessionevent_seal() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    seq bigint;
    prev text;
    digest text;
BEGIN
    -- Lock the head (creating it for a session's first event): one writer per session.
    SELECT h.last_seq, h.last_hash INTO seq, prev FROM agents_sessionchainhead h
    WHERE h.session_id = NEW.session_id FOR UPDATE;
    IF NOT FOUND THEN
        -- No head: the session's first event, or the session was deleted in this
        -- transaction (its head went with it) — then so was the event: nothing to seal.
        PERFORM 1 FROM agents_sessionevent WHERE id = NEW.id;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        INSERT INTO agents_sessionchainhead (session_id, last_seq, last_hash)
        VALUES (NEW.session_id, 0, repeat('0', 64)) ON CONFLICT (session_id) DO NOTHING;
        SELECT h.last_seq, h.last_hash INTO seq, prev FROM agents_sessionchainhead h
        WHERE h.session_id = NEW.session_id FOR UPDATE;
    END IF;
    seq := seq + 1;
    digest := agents_event_hash(agents_event_canonical(
        prev, NEW.tenant_id, NEW.session_id, seq, NEW.id, NEW.turn_id, NEW.created_at,
        NEW.type, NEW.payload));
    UPDATE agents_sessionevent SET chain_seq = seq, prev_hash = prev, hash = digest
    WHERE id = NEW.id;
    IF NOT FOUND THEN
        -- Deleted again before its transaction committed (its session went with it): no
        -- link, and the head stays as it was.
        RETURN NULL;
    END IF;
    UPDATE agents_sessionchainhead SET last_seq = seq, last_hash = digest
    WHERE session_id = NEW.session_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION agents_sessionevent_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF pg_trigger_depth() > 1 THEN  -- the sealing trigger's own UPDATE
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'session event % is append-only: it can not be changed', OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;
"""

# Existing events, chained in id order per session, before the triggers exist.
BACKFILL = r"""
DO $$
DECLARE
    r record;
    current_session uuid;
    seq bigint;
    prev text;
    digest text;
BEGIN
    FOR r IN SELECT id, tenant_id, session_id, turn_id, created_at, type, payload
             FROM agents_sessionevent ORDER BY session_id, id LOOP
        IF current_session IS DISTINCT FROM r.session_id THEN
            IF current_session IS NOT NULL THEN
                INSERT INTO agents_sessionchainhead VALUES (current_session, seq, prev);
            END IF;
            current_session := r.session_id;
            seq := 0;
            prev := repeat('0', 64);
        END IF;
        seq := seq + 1;
        digest := agents_event_hash(agents_event_canonical(
            prev, r.tenant_id, r.session_id, seq, r.id, r.turn_id, r.created_at, r.type,
            r.payload));
        UPDATE agents_sessionevent SET chain_seq = seq, prev_hash = prev, hash = digest
        WHERE id = r.id;
        prev := digest;
    END LOOP;
    IF current_session IS NOT NULL THEN
        INSERT INTO agents_sessionchainhead VALUES (current_session, seq, prev);
    END IF;
END
$$;
"""

TRIGGERS = r"""
CREATE CONSTRAINT TRIGGER sessionevent_seal AFTER INSERT ON agents_sessionevent
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION agents_sessionevent_seal();
CREATE TRIGGER sessionevent_refuse_update BEFORE UPDATE ON agents_sessionevent
    FOR EACH ROW EXECUTE FUNCTION agents_sessionevent_refuse_update();
"""

DROP = r"""
DROP TRIGGER IF EXISTS sessionevent_refuse_update ON agents_sessionevent;
DROP TRIGGER IF EXISTS sessionevent_seal ON agents_sessionevent;
DROP FUNCTION IF EXISTS agents_sessionevent_refuse_update();
DROP FUNCTION IF EXISTS agents_sessionevent_seal();
DROP FUNCTION IF EXISTS agents_event_hash(text);
DROP FUNCTION IF EXISTS agents_event_canonical(text, uuid, uuid, bigint, bigint, uuid,
    timestamptz, text, jsonb);
"""


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0004_budgets'),
        ('tenants', '0002_invitations_apikey_hash_index'),
    ]

    operations = [
        migrations.CreateModel(
            name='SessionChainHead',
            fields=[
                ('session', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='+', serialize=False, to='agents.agentsession')),
                ('last_seq', models.PositiveBigIntegerField()),
                ('last_hash', models.CharField(max_length=64)),
            ],
            options={
                'db_table': 'agents_sessionchainhead',
            },
        ),
        migrations.AddField(
            model_name='sessionevent',
            name='chain_seq',
            field=models.PositiveBigIntegerField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name='sessionevent',
            name='hash',
            field=models.CharField(blank=True, default='', editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name='sessionevent',
            name='prev_hash',
            field=models.CharField(blank=True, default='', editable=False, max_length=64),
        ),
        migrations.AddConstraint(
            model_name='sessionevent',
            constraint=models.UniqueConstraint(fields=('session', 'chain_seq'), name='uniq_event_session_chain_seq'),
        ),
        migrations.RunSQL(FUNCTIONS + BACKFILL + TRIGGERS, reverse_sql=DROP),
    ]
