"""Cutting a document into chunks for embedding. Framework-free.

A small recursive splitter in the manner of LangChain's RecursiveCharacterTextSplitter (whose
package would bring langchain-core for 60 lines): split at the coarsest boundary that makes
pieces fit — blank lines (paragraphs), then line breaks, then sentence ends, then spaces, then
anywhere — and pack neighbouring pieces into chunks of at most `size` characters, each
starting with up to `overlap` characters of the previous one's end so a sentence cut at a
boundary is still found whole in one of them. 800 characters is about 200 word pieces,
within all-MiniLM-L6-v2's 256-token window.
"""

from __future__ import annotations

import re

_SEPARATORS = ("\n\n", "\n", ". ", " ", "")


def _split(text: str, size: int, separators: tuple[str, ...]) -> list[str]:
    if len(text) <= size:
        return [text]
    separator, rest = separators[0], separators[1:]
    if separator == "":
        return [text[i : i + size] for i in range(0, len(text), size)]
    parts = text.split(separator)
    pieces: list[str] = []
    for i, part in enumerate(parts):
        piece = part + (separator if i < len(parts) - 1 else "")
        if len(piece) > size:
            pieces.extend(_split(piece, size, rest))
        elif piece:
            pieces.append(piece)
    return pieces


def chunk_text(text: str, *, size: int = 800, overlap: int = 100) -> list[str]:
    """The chunks of `text`, in order; whitespace-only pieces are dropped."""
    if size <= 0 or overlap < 0 or overlap >= size:
        raise ValueError("chunk size must be positive and the overlap smaller than it")
    text = re.sub(r"\r\n?", "\n", text).strip()
    if not text:
        return []
    pieces = _split(text, size - overlap, _SEPARATORS)
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + len(piece) > size - overlap:
            chunks.append(current)
            tail = current[-overlap:] if overlap else ""
            # Start the overlap at a word boundary where there is one.
            space = tail.find(" ")
            current = tail[space + 1 :] if 0 <= space < len(tail) - 1 else tail
        current += piece
    if current.strip():
        chunks.append(current)
    return [chunk.strip() for chunk in chunks if chunk.strip()]
