"""Any OpenAI-compatible `/v1/embeddings` endpoint, through the official openai SDK.

The endpoint is the platform operator's setting, never a tenant's input; still, every
connection goes through the egress guard (a loopback or private address needs an entry in
WARDEN_EGRESS_ALLOW), and no proxy is taken from the environment.
"""

from __future__ import annotations

from collections.abc import Sequence

import openai

from apps.core.egress import EgressPolicy
from apps.core.egress.httpx2_guard import GuardedTransport

from .base import EmbedderError, EmbedderUnavailable, normalize

NO_KEY = "none"  # servers without auth (vLLM, llama.cpp, Ollama) still need the header set


class OpenAICompatEmbedder:
    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        dimensions: int,
        egress: EgressPolicy,
        api_key: str = "",
        timeout_s: float = 30.0,
    ) -> None:
        self.name = f"openai:{model}"
        self.model = model
        self.dimensions = dimensions
        self._client = openai.OpenAI(
            api_key=api_key or NO_KEY,
            base_url=base_url,
            max_retries=0,  # the callers pause and resume; no hidden retries here
            timeout=timeout_s,
            http_client=openai.DefaultHttpxClient(
                transport=GuardedTransport(egress), trust_env=False
            ),
        )

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        try:
            response = self._client.embeddings.create(model=self.model, input=list(texts))
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise EmbedderUnavailable(f"embedding endpoint unreachable: {exc}") from exc
        except openai.APIStatusError as exc:
            if exc.status_code in (408, 429) or exc.status_code >= 500:
                raise EmbedderUnavailable(f"embedding endpoint answered {exc.status_code}") from exc
            raise EmbedderError(f"embedding endpoint refused: {exc.status_code}") from exc
        rows = sorted(response.data, key=lambda row: row.index)
        if len(rows) != len(texts):
            raise EmbedderUnavailable(
                f"embedding endpoint returned {len(rows)} vectors for {len(texts)} texts"
            )
        vectors = [list(row.embedding) for row in rows]
        for vector in vectors:
            if len(vector) != self.dimensions:
                raise EmbedderError(
                    f"model {self.model!r} returned {len(vector)} dimensions, "
                    f"the store holds {self.dimensions}"
                )
        return [normalize(vector) for vector in vectors]

    def close(self) -> None:
        self._client.close()
