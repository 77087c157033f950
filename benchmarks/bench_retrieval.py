"""Tenant-filtered vector search on pgvector's HNSW index: latency and recall@10.

Run: `.venv/bin/python benchmarks/bench_retrieval.py [--rows 100000] [--tenants 10]
[--queries 200] [--m 32] [--ef-construction 128] [--ef-search 20,40,80,120]
[--topics 1000] [--noise 0.04] [--keep]`.

100k chunks x 384 dimensions (all-MiniLM-L6-v2's width) across 10 tenants, synthetic but
clustered like real embeddings: 1000 topic centres (--topics), each chunk a centre plus
Gaussian noise (--noise), each chunk's tenant drawn at random (so every tenant owns ~10 % of
every topic: the filter drops nine candidates in ten, the hard case for an approximate
index). Loaded with binary COPY into a table shaped like memory_chunk (tenant, namespace,
metadata, vector(384)) with the same indexes (btree on tenant+namespace, HNSW
vector_cosine_ops), then queried exactly as
apps/memory/selectors.py does: one transaction, `set_config` of hnsw.ef_search,
hnsw.iterative_scan = relaxed_order and hnsw.max_scan_tuples, then
`WHERE tenant_id = $1 AND embedding IS NOT NULL ORDER BY embedding <=> $q LIMIT 10`.
Latency is that whole round trip, from this client. Recall@10 is against exact search
(numpy, cosine, over the tenant's own rows). Goal on the 2-core machine: p95 <= 20 ms at
recall >= 0.95.

It starts the embedded PostgreSQL under var/bench-retrieval/ unless DATABASE_URL is set;
the table is dropped at the end unless --keep (then a rerun with the same --rows, --m and
--ef-construction reuses it and skips loading).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

ROOT = Path(__file__).resolve().parent.parent
DIM = 384
# Defaults: 1000 topics (a tenant holds ~10 chunks of each), a chunk's cosine to its topic
# centre about 0.8. --topics 64 --noise 0.06 is a harder set: ~156 chunks per topic and
# tenant, all about equally far from each other (cosine ~0.4), where "the" ten nearest are
# nearly a tie.
TOPICS = 1000
NOISE = 0.04
K = 10


def make_data(
    rows: int, tenants: int, seed: int, topics: int, noise: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    topic = rng.integers(0, topics, rows)
    vectors = centres[topic] + rng.normal(0, noise, (rows, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    owner = rng.integers(0, tenants, rows)
    return vectors.astype(np.float32), owner, centres


def load(
    conn: psycopg.Connection[Any],
    table: str,
    vectors: np.ndarray,
    owner: np.ndarray,
    tenant_ids: list[uuid.UUID],
    m: int,
    ef_construction: int,
) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(
        f"CREATE TABLE {table} (id bigserial PRIMARY KEY, tenant_id uuid NOT NULL, "
        f"namespace varchar(64) NOT NULL, metadata jsonb NOT NULL, embedding vector({DIM}))"
    )
    started = time.perf_counter()
    with (
        conn.cursor() as cursor,
        cursor.copy(
            f"COPY {table} (tenant_id, namespace, metadata, embedding) "
            "FROM STDIN WITH (FORMAT BINARY)"
        ) as copy,
    ):
        copy.set_types(["uuid", "varchar", "jsonb", "vector"])
        for vector, who in zip(vectors, owner, strict=True):
            copy.write_row((tenant_ids[who], "default", psycopg.types.json.Jsonb({}), vector))
    print(f"COPY {len(vectors)} rows: {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    conn.execute(f"CREATE INDEX ON {table} (tenant_id, namespace)")
    conn.execute("SET maintenance_work_mem = '1GB'")
    conn.execute(
        f"CREATE INDEX {table}_hnsw ON {table} USING hnsw (embedding vector_cosine_ops) "
        f"WITH (m = {m}, ef_construction = {ef_construction})"
    )
    conn.execute(f"ANALYZE {table}")
    print(
        f"indexes (HNSW m={m}, ef_construction={ef_construction}): "
        f"{time.perf_counter() - started:.1f} s"
    )


def exact_top(vectors: np.ndarray, owner: np.ndarray, tenant: int, query: np.ndarray) -> set[int]:
    rows = np.flatnonzero(owner == tenant)
    scores = vectors[rows] @ query
    best = rows[np.argsort(-scores)[:K]]
    return {int(r) + 1 for r in best}  # bigserial ids start at 1, in COPY order


def run(
    conn: psycopg.Connection[Any],
    table: str,
    queries: list[tuple[int, np.ndarray]],
    tenant_ids: list[uuid.UUID],
    truth: list[set[int]],
    ef_search: int,
    mode: str,
    max_scan: int,
) -> tuple[float, float, float]:
    sql = (
        f"SELECT id FROM {table} WHERE tenant_id = %s AND embedding IS NOT NULL "
        f"ORDER BY embedding <=> %s LIMIT {K}"
    )
    latencies, recalls = [], []
    for (tenant, query), expected in zip(queries, truth, strict=True):
        started = time.perf_counter()
        with conn.transaction():
            conn.execute(
                "SELECT set_config('hnsw.ef_search', %s, true), "
                "set_config('hnsw.iterative_scan', %s, true), "
                "set_config('hnsw.max_scan_tuples', %s, true)",
                [str(ef_search), mode, str(max_scan)],
            )
            found = [row[0] for row in conn.execute(sql, [tenant_ids[tenant], query])]
        latencies.append((time.perf_counter() - started) * 1000)
        recalls.append(len(set(found) & expected) / K)
    latencies.sort()
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    return statistics.median(latencies), p95, statistics.mean(recalls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=128)
    parser.add_argument("--ef-search", default="20,40,80,120")
    parser.add_argument("--max-scan-tuples", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--topics", type=int, default=TOPICS)
    parser.add_argument("--noise", type=float, default=NOISE)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--shared-buffers", default="1GB", help="the embedded server's")
    args = parser.parse_args()

    from devtools import embedded

    pgdata = None
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        pgdata = ROOT / "var" / "bench-retrieval" / "postgres"
        port = embedded.postgres_start(pgdata)
        # pgvector's advice: the HNSW index (here ~200 MB) and the hot rows in memory. The
        # embedded server's default 128 MB would send most page reads to the OS cache.
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres") as conn:
            conn.autocommit = True
            conn.execute(f"ALTER SYSTEM SET shared_buffers = '{args.shared_buffers}'")
        embedded.postgres_stop(pgdata)
        port = embedded.postgres_start(pgdata)
        embedded.postgres_ensure_database(port, "bench")
        url = f"postgresql://postgres@127.0.0.1:{port}/bench"
    table = f"bench_chunk_{args.rows}_{args.topics}_{args.m}_{args.ef_construction}"
    try:
        vectors, owner, centres = make_data(
            args.rows, args.tenants, args.seed, args.topics, args.noise
        )
        tenant_ids = [uuid.UUID(int=i + 1) for i in range(args.tenants)]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(conn)
            exists = conn.execute("SELECT to_regclass(%s)", [table]).fetchone()
            if not (args.keep and exists and exists[0]):
                load(conn, table, vectors, owner, tenant_ids, args.m, args.ef_construction)
            version = conn.execute("SELECT extversion FROM pg_extension WHERE extname='vector'")
            buffers = conn.execute("SHOW shared_buffers").fetchone()
            print(
                f"pgvector {version.fetchone()[0]}; {args.rows} rows x {DIM} dims, "
                f"{args.tenants} tenants, {args.topics} topics (noise {args.noise}), "
                f"{args.queries} queries, top-{K}; shared_buffers {buffers and buffers[0]}; "
                f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}"
            )
            rng = np.random.default_rng(args.seed + 1)
            queries = []
            for _ in range(args.queries):
                query = centres[rng.integers(0, args.topics)] + rng.normal(0, args.noise, DIM)
                queries.append(
                    (
                        int(rng.integers(0, args.tenants)),
                        (query / np.linalg.norm(query)).astype(np.float32),
                    )
                )
            truth = [exact_top(vectors, owner, t, q) for t, q in queries]
            tenant, query = queries[0]
            with conn.transaction():
                conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
                plan = conn.execute(
                    f"EXPLAIN SELECT id FROM {table} WHERE tenant_id = %s AND embedding IS NOT "
                    f"NULL ORDER BY embedding <=> %s LIMIT {K}",
                    [tenant_ids[tenant], query],
                ).fetchall()
            print("plan:", " / ".join(row[0].strip()[:90] for row in plan[:2]))
            run(
                conn,
                table,
                queries[:20],
                tenant_ids,
                truth[:20],
                40,
                "relaxed_order",
                args.max_scan_tuples,
            )  # warm the cache
            print(
                f"{'iterative_scan':>15} {'ef_search':>9} {'p50 ms':>8} {'p95 ms':>8} "
                f"{'recall@10':>9}"
            )
            for mode in ("off", "relaxed_order"):
                for ef in [int(x) for x in args.ef_search.split(",")]:
                    if mode == "off" and ef != 40:
                        continue  # one line to show what the filter does without it
                    p50, p95, recall = run(
                        conn, table, queries, tenant_ids, truth, ef, mode, args.max_scan_tuples
                    )
                    print(f"{mode:>15} {ef:>9} {p50:>8.2f} {p95:>8.2f} {recall:>9.3f}")
            print(f"load average at the end: {os.getloadavg()[0]:.1f}")
            if not args.keep:
                conn.execute(f"DROP TABLE {table}")
    finally:
        if pgdata is not None:
            embedded.postgres_stop(pgdata)


if __name__ == "__main__":
    main()
