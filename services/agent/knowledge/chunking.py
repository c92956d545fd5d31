"""Blocks to chunks: about 200 tokens each, along paragraph and heading boundaries, with overlap.

The rule, with tokens estimated as characters / 4 (the project's estimate everywhere):

1. A chunk never spans two sections (a heading, or a PDF page, starts a new chunk); a
   heading is the first line of its section's first chunk.
2. Blocks (paragraphs, list items, table rows, code blocks) are added whole while the
   chunk stays within :data:`TARGET_CHARS` (about 200 tokens).
3. The next chunk of the same section starts with the previous chunk's last block
   again when that block is at most :data:`OVERLAP_CHARS` (about 50 tokens): a short
   paragraph or a list item that bridges the two.
4. A block longer than :data:`TARGET_CHARS` is cut at sentence ends into pieces of at
   most that size; a sentence longer than that is cut at word boundaries, and each piece
   of a cut block repeats the last :data:`OVERLAP_CHARS` of the one before.

Written here rather than taken from a splitting library: the boundaries come from the
parsed structure (headings, table rows, PDF pages) that
:mod:`services.agent.knowledge.parsing` already has, which generic text splitters see
only as characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.agent.knowledge.parsing import Block

TARGET_CHARS = 800
OVERLAP_CHARS = 200
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True, slots=True)
class Piece:
    """A chunk before it is embedded.

    Attributes:
        section: The section it is in (see :class:`~services.agent.knowledge.parsing.Block`).
        text: Its text: blocks joined by blank lines.
    """

    section: str
    text: str

    @property
    def embedded_text(self) -> str:
        """Returns what is embedded: the section path, then the text, so a heading's words count."""
        return f"{self.section}\n{self.text}" if self.section else self.text


def _split_long(text: str) -> list[str]:
    """Cuts a block longer than :data:`TARGET_CHARS` at sentence ends, or word boundaries, with overlap."""
    units: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        while len(sentence) > TARGET_CHARS:
            cut = sentence.rfind(" ", 0, TARGET_CHARS)
            cut = cut if cut > 0 else TARGET_CHARS
            units.append(sentence[:cut])
            sentence = sentence[cut:].lstrip()
        if sentence:
            units.append(sentence)
    pieces: list[str] = []
    current = ""
    for unit in units:
        if current and len(current) + 1 + len(unit) > TARGET_CHARS:
            pieces.append(current)
            tail = current[-OVERLAP_CHARS:]
            space = tail.find(" ")
            tail = tail[space + 1 :] if space >= 0 else tail
            current = tail if len(tail) + 1 + len(unit) <= TARGET_CHARS else ""
        current = f"{current} {unit}" if current else unit
    if current:
        pieces.append(current)
    return pieces


def chunk(blocks: list[Block]) -> list[Piece]:
    """Returns the chunks of a document's blocks, in document order (the rule is in the module docs)."""
    pieces: list[Piece] = []
    current: list[str] = []
    size = 0
    section: str | None = None

    def emit() -> None:
        if current and section is not None:
            pieces.append(Piece(section, "\n\n".join(current)))

    for block in blocks:
        if block.section != section or block.heading:
            emit()
            current, size, section = [], 0, block.section
        parts = [block.text] if len(block.text) <= TARGET_CHARS else _split_long(block.text)
        for part in parts:
            if current and size + 2 + len(part) > TARGET_CHARS:
                emit()
                last = current[-1]
                keep = len(last) <= OVERLAP_CHARS and len(last) + 2 + len(part) <= TARGET_CHARS
                current = [last] if keep else []
                size = len(last) if keep else 0
            current.append(part)
            size += (2 if size else 0) + len(part)
    emit()
    return pieces
