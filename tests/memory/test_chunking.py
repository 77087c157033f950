"""The splitter: chunks fit, nothing is lost, neighbours overlap, boundaries are preferred."""

from __future__ import annotations

import itertools

import pytest

from apps.memory.chunking import chunk_text


def test_short_text_is_one_chunk_and_blank_text_none() -> None:
    assert chunk_text("  hello world \r\n") == ["hello world"]
    assert chunk_text(" \n\n\t ") == []


def test_long_text_is_cut_at_paragraphs_within_the_size_with_overlap() -> None:
    paragraphs = [f"Paragraph {i}. " + " ".join(f"w{i}x{j}" for j in range(40)) for i in range(8)]
    chunks = chunk_text("\n\n".join(paragraphs), size=400, overlap=60)
    assert len(chunks) > 1 and all(len(c) <= 400 for c in chunks)
    text = " ".join(chunks)
    assert all(f"w{i}x{j}" in text for i in range(8) for j in range(40))  # nothing lost
    for before, after in itertools.pairwise(chunks):
        assert after.split()[0] in before  # each chunk starts inside the previous one's end


def test_a_word_longer_than_a_chunk_is_cut_anywhere() -> None:
    chunks = chunk_text("x" * 1000, size=300, overlap=0)
    assert "".join(chunks) == "x" * 1000 and all(len(c) <= 300 for c in chunks)


def test_overlap_must_be_smaller_than_the_size() -> None:
    with pytest.raises(ValueError):
        chunk_text("text", size=100, overlap=100)
