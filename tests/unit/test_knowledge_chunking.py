"""The chunking rule and the parsers' blocks (services/agent/knowledge/chunking.py, parsing.py)."""

from __future__ import annotations

from services.agent.knowledge.chunking import OVERLAP_CHARS, TARGET_CHARS, chunk
from services.agent.knowledge.parsing import Block, parse


def test_a_heading_starts_a_chunk_and_blocks_stay_whole() -> None:
    blocks = [
        Block("Intro", "Intro", heading=True),
        Block("a" * 300, "Intro"),
        Block("b" * 300, "Intro"),
        Block("c" * 300, "Intro"),
        Block("Next", "Next", heading=True),
        Block("d" * 10, "Next"),
    ]
    pieces = chunk(blocks)
    assert [(p.section, p.text) for p in pieces] == [
        ("Intro", "Intro\n\n" + "a" * 300 + "\n\n" + "b" * 300),
        ("Intro", "c" * 300),  # the last block (300 > 200 characters) is not repeated
        ("Next", "Next\n\n" + "d" * 10),
    ]
    assert pieces[0].embedded_text == "Intro\n" + pieces[0].text


def test_a_short_last_block_is_repeated_as_overlap() -> None:
    short = "x" * OVERLAP_CHARS
    pieces = chunk([Block("a" * 590, "s"), Block(short, "s"), Block("b" * 500, "s")])
    assert [p.text for p in pieces] == ["a" * 590 + "\n\n" + short, short + "\n\n" + "b" * 500]


def test_a_long_block_is_cut_at_sentences_with_overlap_and_every_chunk_fits() -> None:
    sentence = "The quick brown fox jumps over the lazy dog again and again. "
    pieces = chunk([Block((sentence * 40).strip(), "")])
    assert len(pieces) > 2 and all(len(p.text) <= TARGET_CHARS for p in pieces)
    assert all(p.text.endswith(".") for p in pieces)
    assert pieces[1].text.startswith(pieces[0].text[-OVERLAP_CHARS:].split(" ", 1)[1][:40])


def test_html_keeps_headings_as_sections_and_drops_scripts() -> None:
    html = b"<h1>Ship</h1><p>We ship <b>fast</b>.<br>Daily.</p><script>x()</script><ul><li>one</li></ul>"
    assert parse("text/html", html) == [
        Block("Ship", "Ship", heading=True),
        Block("We ship fast. Daily.", "Ship"),
        Block("one", "Ship"),
    ]


def test_markdown_tables_become_rows_and_headings_nest() -> None:
    markdown = b"# A\n\n## B\n\n| k | v |\n|---|---|\n| x | 1 |\n\n# C\n\ntext *here*\n"
    assert parse("text/markdown; charset=utf-8", markdown) == [
        Block("A", "A", heading=True),
        Block("B", "A > B", heading=True),
        Block("k | v", "A > B"),
        Block("x | 1", "A > B"),
        Block("C", "C", heading=True),
        Block("text here", "C"),
    ]
