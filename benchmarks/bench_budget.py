"""Budget reservation latency under 200 concurrent reservers, against a real Redis.

Run: `.venv/bin/python benchmarks/bench_budget.py [--processes 4] [--threads 50]
[--seconds 20] [--model-ms 20:80] [--burst] [--compare-postgres]`.

No Django: it drives the framework-free ledger (apps/budgets/ledger) the way a worker does.
Each reserver is a turn of the real shape: 5 counters (tenant, agent and user shared by all,
the hot keys; its own session; a new turn every 4 calls) and 4 rate windows (tenant and user
rpm/tpm, limits too high to refuse), looping reserve → sleep U(model-ms) (the model call) →
settle. Latency is `perf_counter` around each client call, so it includes the round trip and
the client. `--burst`: every reserver waits on one barrier, then reserves once. `--model-ms 0`:
a closed loop. `--compare-postgres`: the same load on a PostgreSQL row-lock variant (one
conditional UPDATE over the counters, rows locked in key order, autocommit) — what the README
argues against, measured. It starts the embedded Redis (and PostgreSQL) under
var/bench-budget/ unless REDIS_URL (DATABASE_URL) is set. Goal: reserve p95 ≤ 5 ms.
End checks: nothing stays held, the open-hold set is empty, the tenant's spend is the sum
of what was settled.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from apps.budgets.ledger.redis_ledger import RedisLedger
from apps.budgets.ledger.types import Cap, Counter, RateWindow

ROOT = Path(__file__).resolve().parent.parent
BIG = 10**15
CALLS_PER_TURN = 4
HOLD_TOKENS, HOLD_MICROS = 10_000, 42_000


def _counter(prefix: str, scope: str, target: str) -> Counter:
    return Counter(
        key=f"{prefix}:c:bench:{scope}:{target}:",
        scope=scope,
        target=target,
        window="",
        ttl_s=3600,
        tenant_id="bench",
    )


def _cap(counter: Counter) -> Cap:
    return Cap(counter=counter, budget_id=None, period="day", max_tokens=BIG, max_micros=BIG)


def _windows(prefix: str) -> list[RateWindow]:
    return [
        RateWindow(key=f"{prefix}:rate:bench:{kind}", scope="tenant", kind=kind, limit=BIG)
        for kind in ("rpm", "tpm")
    ] + [
        RateWindow(key=f"{prefix}:rate:bench:u1:{kind}", scope="user", kind=kind, limit=BIG)
        for kind in ("rpm", "tpm")
    ]


class RedisBackend:
    def __init__(self, url: str, prefix: str, threads: int) -> None:
        pool = redis.ConnectionPool.from_url(url, max_connections=threads + 4)
        self.ledger = RedisLedger(redis.Redis(connection_pool=pool), prefix=prefix)
        # A connection per reserver before the clock starts, as a worker's warm pool has:
        # the figures are reservations, not TCP handshakes.
        warm = [pool.get_connection() for _ in range(threads)]
        for conn in warm:
            pool.release(conn)
        self.prefix = prefix
        self.windows = _windows(prefix)
        self.shared = [_counter(prefix, s, "x") for s in ("tenant", "agent", "user")]
        for counter in self.shared:
            self.ledger.load(counter, 0, 0)

    def caps(self, session: str, turn: str) -> list[Cap]:
        own = [_counter(self.prefix, "session", session), _counter(self.prefix, "turn", turn)]
        for counter in own:
            self.ledger.load(counter, 0, 0)  # what the service does on the script's "load"
        return [_cap(c) for c in (*self.shared, *own)]

    def reserve(self, rid: str, caps: list[Cap]) -> bool:
        result = self.ledger.reserve(
            reservation_id=rid,
            caps=caps,
            windows=self.windows,
            tokens=HOLD_TOKENS,
            micros=HOLD_MICROS,
            deadline_s=time.time() + 300,
            meta={},
        )
        return result.kind == "ok"

    def settle(self, rid: str, caps: list[Cap], tokens: int, micros: int) -> None:
        self.ledger.settle(
            reservation_id=rid, caps=caps, windows=self.windows, tokens=tokens, micros=micros
        )


_PG_RESERVE = """
WITH locked AS (
  SELECT key, st + rt + %(t)s <= cap_t AND sc + rc + %(c)s <= cap_c AS room FROM bench_counter
  WHERE key = ANY(%(keys)s) ORDER BY key FOR UPDATE
)
UPDATE bench_counter SET rt = rt + %(t)s, rc = rc + %(c)s
WHERE key = ANY(%(keys)s) AND (SELECT bool_and(room) FROM locked)
RETURNING key
"""
_PG_SETTLE = """
WITH locked AS (SELECT key FROM bench_counter WHERE key = ANY(%(keys)s) ORDER BY key FOR UPDATE)
UPDATE bench_counter SET rt = rt - %(ht)s, rc = rc - %(hc)s, st = st + %(t)s, sc = sc + %(c)s
WHERE key IN (SELECT key FROM locked)
"""


class PostgresBackend:
    """Counters as rows; reserve = one conditional UPDATE holding row locks until COMMIT."""

    def __init__(self, url: str, prefix: str, threads: int) -> None:
        import psycopg

        self.psycopg = psycopg
        self.url = url
        self.local = threading.local()
        self.shared = [f"{prefix}:{s}" for s in ("tenant", "agent", "user")]
        self.prefix = prefix
        self._conn().execute(  # the hot rows every process shares
            "INSERT INTO bench_counter (key) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
            [self.shared],
        )

    def _conn(self) -> Any:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = self.psycopg.connect(self.url, autocommit=True)
        return conn

    def caps(self, session: str, turn: str) -> list[str]:
        own = [f"{self.prefix}:s:{session}", f"{self.prefix}:t:{turn}"]
        self._conn().execute(
            "INSERT INTO bench_counter (key) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
            [own],
        )
        return [*self.shared, *own]

    def reserve(self, rid: str, caps: list[str]) -> bool:
        rows = (
            self._conn()
            .execute(_PG_RESERVE, {"t": HOLD_TOKENS, "c": HOLD_MICROS, "keys": caps})
            .fetchall()
        )
        return len(rows) == len(caps)

    def settle(self, rid: str, caps: list[str], tokens: int, micros: int) -> None:
        self._conn().execute(
            _PG_SETTLE,
            {"ht": HOLD_TOKENS, "hc": HOLD_MICROS, "t": tokens, "c": micros, "keys": caps},
        )


def _backend(args: argparse.Namespace, prefix: str) -> Any:
    if args.backend == "postgres":
        return PostgresBackend(args.database_url, prefix, args.threads)
    return RedisBackend(args.redis_url, prefix, args.threads)


def worker(args: argparse.Namespace, index: int, prefix: str, barrier: Any, out: Any) -> None:
    backend = _backend(args, prefix)
    low, high = args.model_ms
    reserve_ms: list[float] = []
    settle_ms: list[float] = []
    settled = [0, 0]
    refused = [0]
    lock = threading.Lock()
    start_line = threading.Barrier(args.threads)
    stop_at: list[float] = [0.0]

    def reserver(thread: int) -> None:
        rng = random.Random(f"{index}-{thread}")
        session = f"{index}-{thread}-{uuid.uuid4().hex[:6]}"
        mine_r: list[float] = []
        mine_s: list[float] = []
        caps = backend.caps(session, f"{session}-0")
        start_line.wait()
        if not args.burst and high:
            # Steady state, not a stampede: 200 turns in flight are at different points of
            # their model calls (only --burst measures everyone at once).
            time.sleep(rng.uniform(0, high) / 1000)
        calls = 0
        while True:
            if calls and calls % CALLS_PER_TURN == 0:
                caps = backend.caps(session, f"{session}-{calls}")
            rid = f"{session}-{calls}"
            t0 = time.perf_counter()
            ok = backend.reserve(rid, caps)
            mine_r.append((time.perf_counter() - t0) * 1000)
            calls += 1
            if not ok:
                with lock:
                    refused[0] += 1
            else:
                if high:
                    time.sleep(rng.uniform(low, high) / 1000)
                tokens, micros = rng.randint(1, HOLD_TOKENS), rng.randint(1, HOLD_MICROS)
                t0 = time.perf_counter()
                backend.settle(rid, caps, tokens, micros)
                mine_s.append((time.perf_counter() - t0) * 1000)
                with lock:
                    settled[0] += tokens
                    settled[1] += micros
            if args.burst or time.perf_counter() >= stop_at[0]:
                break
        with lock:
            reserve_ms.extend(mine_r)
            settle_ms.extend(mine_s)

    threads = [threading.Thread(target=reserver, args=(t,)) for t in range(args.threads)]
    barrier.wait()  # every process ready: all start together
    stop_at[0] = time.perf_counter() + args.seconds
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put((reserve_ms, settle_ms, settled, refused[0]))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def report(label: str, values: list[float]) -> str:
    if not values:
        return f"{label}: none"
    return (
        f"{label}: n={len(values)} p50={pct(values, 0.50):.2f} ms p95={pct(values, 0.95):.2f} ms "
        f"p99={pct(values, 0.99):.2f} ms max={max(values):.2f} ms "
        f"mean={statistics.fmean(values):.2f} ms"
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"bench:budget:{uuid.uuid4().hex[:8]}"
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(args.processes), ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(args, i, prefix, barrier, out))
        for i in range(args.processes)
    ]
    before = _script_stats(args) if args.backend == "redis" else (0, 0)
    started = time.perf_counter()
    for proc in procs:
        proc.start()
    results = [out.get(timeout=args.seconds + 300) for _ in procs]
    for proc in procs:
        proc.join()
    elapsed = time.perf_counter() - started
    reserve_ms = [v for r in results for v in r[0]]
    settle_ms = [v for r in results for v in r[1]]
    settled_tokens = sum(r[2][0] for r in results)
    settled_micros = sum(r[2][1] for r in results)
    refused = sum(r[3] for r in results)
    print(
        f"[{args.backend}] {args.processes} processes x {args.threads} threads, "
        f"model {args.model_ms[0]:g}-{args.model_ms[1]:g} ms"
        + (", burst" if args.burst else f", {args.seconds:g} s")
    )
    print("  " + report("reserve", reserve_ms))
    print("  " + report("settle ", settle_ms))
    print(
        f"  reservations/s: {len(reserve_ms) / elapsed:.0f}  refused: {refused}  "
        f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    if args.backend == "redis":
        calls, usec = (a - b for a, b in zip(_script_stats(args), before, strict=True))
        print(f"  in Redis: {usec / max(calls, 1):.1f} us per script run ({calls} runs)")
    check(args, prefix, settled_tokens, settled_micros)
    return {"reserve": reserve_ms, "settle": settle_ms}


def _script_stats(args: argparse.Namespace) -> tuple[int, int]:
    """(calls, total µs) of every script Redis ran so far: the server's own time per step."""
    stats = redis.Redis.from_url(args.redis_url).info("commandstats")
    calls = usec = 0
    for name in ("cmdstat_evalsha", "cmdstat_eval"):
        calls += int(stats.get(name, {}).get("calls", 0))
        usec += int(stats.get(name, {}).get("usec", 0))
    return calls, usec


def check(args: argparse.Namespace, prefix: str, tokens: int, micros: int) -> None:
    if args.backend == "postgres":
        import psycopg

        with psycopg.connect(args.database_url, autocommit=True) as conn:
            held = conn.execute(
                "SELECT coalesce(sum(rt), 0), coalesce(sum(rc), 0) FROM bench_counter "
                "WHERE key LIKE %s",
                [f"{prefix}:%"],
            ).fetchone()
            spent = conn.execute(
                "SELECT st, sc FROM bench_counter WHERE key = %s", [f"{prefix}:tenant"]
            ).fetchone()
        assert held == (0, 0), f"still held: {held}"
        assert spent == (tokens, micros), f"tenant spent {spent}, settled {(tokens, micros)}"
    else:
        client = redis.Redis.from_url(args.redis_url)
        led = RedisLedger(client, prefix=prefix)
        keys = list(client.scan_iter(f"{prefix}:c:*"))
        for key in keys:
            rt, rc = client.hmget(key, "rt", "rc")
            assert (int(rt), int(rc)) == (0, 0), f"{key!r} still holds {rt}/{rc}"
        assert led.open_count() == 0, "open reservations left"
        tenant = _counter(prefix, "tenant", "x")
        st, sc = client.hmget(tenant.key, "st", "sc")
        assert (int(st), int(sc)) == (tokens, micros), "tenant spend != settled"
        client.delete(*keys, *client.scan_iter(f"{prefix}:*"))
    print("  end checks: nothing held, no open reservation, tenant spend = settled: ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--model-ms", default="20:80")
    parser.add_argument("--burst", action="store_true")
    parser.add_argument("--compare-postgres", action="store_true")
    args = parser.parse_args()
    low, _, high = args.model_ms.partition(":")
    args.model_ms = (float(low), float(high or low))

    from devtools import embedded

    base = ROOT / "var" / "bench-budget"
    redis_pid = None
    args.redis_url = os.environ.get("REDIS_URL", "")
    if not args.redis_url:
        port, redis_pid = embedded.redis_start(base / "redis")
        args.redis_url = f"redis://127.0.0.1:{port}/0"
    pgdata = None
    try:
        args.backend = "redis"
        run(args)
        if args.compare_postgres:
            args.database_url = os.environ.get("DATABASE_URL", "")
            if not args.database_url:
                pgdata = base / "postgres"
                port = embedded.postgres_start(pgdata)
                embedded.postgres_ensure_database(port, "bench")
                args.database_url = f"postgresql://postgres@127.0.0.1:{port}/bench"
            import psycopg

            with psycopg.connect(args.database_url, autocommit=True) as conn:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS bench_counter (key text PRIMARY KEY, "
                    "st bigint NOT NULL DEFAULT 0, sc bigint NOT NULL DEFAULT 0, "
                    "rt bigint NOT NULL DEFAULT 0, rc bigint NOT NULL DEFAULT 0, "
                    f"cap_t bigint NOT NULL DEFAULT {BIG}, cap_c bigint NOT NULL DEFAULT {BIG})"
                )
                conn.execute("TRUNCATE bench_counter")
            args.backend = "postgres"
            run(args)
    finally:
        if redis_pid is not None:
            embedded.redis_stop(redis_pid)
        if pgdata is not None:
            embedded.postgres_stop(pgdata)


if __name__ == "__main__":
    main()
