"""Documents to text blocks: plain text, Markdown, HTML and PDF, each with a well-kept parser.

A block is a paragraph-like piece of text (a paragraph, a list item, a table row, a
code block, a heading) with the section it is in: the path of headings above it for
Markdown and HTML (``Returns > Refunds``), ``page N`` for a PDF. The chunker
(:mod:`services.agent.knowledge.chunking`) never joins blocks of different sections.

Parsers: markdown-it-py (CommonMark, tables enabled), Beautiful Soup 4 with Python's
``html.parser`` (no native dependency), pypdf (text extraction per page).
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from markdown_it import MarkdownIt
from markdown_it.token import Token

if TYPE_CHECKING:
    import bs4

#: The media types a document may have.
TEXT = "text/plain"
MARKDOWN = "text/markdown"
HTML = "text/html"
PDF = "application/pdf"
MEDIA_TYPES = (TEXT, MARKDOWN, HTML, PDF)
#: Headings deeper than this are kept, but the section path names only this many.
MAX_SECTION_DEPTH = 4
_BLANK_LINES = re.compile(r"\n\s*\n")
_SPACES = re.compile(r"\s+")
# pypdf reports fonts and objects it cannot read through logging; a document is judged
# by what it yields, and those warnings name nothing of the tenant's.
logging.getLogger("pypdf").setLevel(logging.ERROR)


class DocumentUnreadable(Exception):
    """The content does not parse as its media type; the message says why."""


@dataclass(frozen=True, slots=True)
class Block:
    """A paragraph-like piece of a document.

    Attributes:
        text: Its text, whitespace collapsed (code blocks keep their lines).
        section: Where it is: a heading path joined with `` > ``, ``page N``, or empty.
        heading: Whether it is a heading (it opens its section).
    """

    text: str
    section: str
    heading: bool = False


def base_media_type(mime_type: str) -> str:
    """Returns the media type without parameters, lower case (``text/HTML; charset=x`` -> ``text/html``)."""
    return mime_type.split(";", 1)[0].strip().lower()


def _collapse(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def decode_text(content: bytes) -> str:
    """Returns UTF-8 content as text, without a byte order mark.

    Raises:
        DocumentUnreadable: It is not UTF-8.
    """
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DocumentUnreadable(f"the content is not UTF-8 (byte {error.start})") from None


def parse_text(content: bytes) -> list[Block]:
    """Returns the paragraphs of plain text: runs of lines between blank lines."""
    text = decode_text(content)
    return [Block(p, "") for p in (_collapse(part) for part in _BLANK_LINES.split(text)) if p]


class _Sections:
    """The heading path at a point of a document."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []

    def enter(self, level: int, title: str) -> None:
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, title))

    @property
    def path(self) -> str:
        return " > ".join(title for _, title in self._stack[:MAX_SECTION_DEPTH])


def _inline_text(token: Token) -> str:
    """The plain text of an inline token: text, inline code and image alt texts, no markup."""
    parts = []
    for child in token.children or ():
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":
            parts.append(child.content)
    return _collapse("".join(parts))


_MARKDOWN = MarkdownIt("commonmark").enable("table")


def parse_markdown(content: bytes) -> list[Block]:
    """Returns the blocks of CommonMark with tables: headings, paragraphs, list items, code, table rows."""
    tokens = _MARKDOWN.parse(decode_text(content))
    sections = _Sections()
    blocks: list[Block] = []
    row: list[str] | None = None
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            title = _inline_text(tokens[i + 1])
            sections.enter(int(token.tag[1]), title)
            if title:
                blocks.append(Block(title, sections.path, heading=True))
        elif token.type == "tr_open":
            row = []
        elif token.type == "tr_close" and row is not None:
            if any(row):
                blocks.append(Block(" | ".join(row), sections.path))
            row = None
        elif token.type == "inline":
            if row is not None:
                row.append(_inline_text(token))
            elif i > 0 and tokens[i - 1].type != "heading_open":
                text = _inline_text(token)
                if text:
                    blocks.append(Block(text, sections.path))
        elif token.type in ("fence", "code_block") and token.content.strip():
            blocks.append(Block(token.content.strip(), sections.path))
    return blocks


_HTML_SKIPPED = frozenset({"script", "style", "noscript", "template", "head", "svg", "iframe", "object"})
_HTML_HEADINGS = {f"h{n}": n for n in range(1, 7)}
# Elements whose text is one block; a table row's cells are joined with " | ".
_HTML_BLOCKS = frozenset(
    {"p", "li", "pre", "blockquote", "dt", "dd", "figcaption", "caption", "tr", "address", "summary"}
)
_HTML_CONTAINERS = frozenset(
    {
        "html",
        "body",
        "div",
        "section",
        "article",
        "main",
        "header",
        "footer",
        "aside",
        "nav",
        "ul",
        "ol",
        "dl",
    }
    | {"table", "thead", "tbody", "tfoot", "figure", "details", "form", "fieldset", "center"}
)


def parse_html(content: bytes) -> list[Block]:
    """Returns the blocks of an HTML document: headings, paragraphs, list items, table rows, loose text.

    Scripts, styles, templates and the ``head`` are dropped. A block element that holds
    other blocks (a list item with a nested list) gives its own loose text as a block
    and then its children's.
    """
    import bs4  # on first use: the agent starts without it (0.1 s)

    soup = bs4.BeautifulSoup(decode_text(content), "html.parser")
    for line_break in soup.find_all("br"):
        line_break.replace_with("\n")
    sections = _Sections()
    blocks: list[Block] = []

    def flush(loose: list[str]) -> None:
        text = _collapse("".join(loose))
        if text:
            blocks.append(Block(text, sections.path))
        loose.clear()

    def walk(element: bs4.Tag) -> None:
        loose: list[str] = []
        for child in element.children:
            if isinstance(
                child, bs4.element.Comment | bs4.element.Doctype | bs4.element.ProcessingInstruction
            ):
                continue
            if isinstance(child, bs4.NavigableString):
                loose.append(str(child))
                continue
            if not isinstance(child, bs4.Tag) or child.name in _HTML_SKIPPED:
                continue
            if child.name in _HTML_HEADINGS:
                flush(loose)
                title = _collapse(child.get_text())
                sections.enter(_HTML_HEADINGS[child.name], title)
                if title:
                    blocks.append(Block(title, sections.path, heading=True))
            elif child.name == "tr":
                flush(loose)
                cells = [_collapse(cell.get_text(" ")) for cell in child.find_all(["td", "th"])]
                if any(cells):
                    blocks.append(Block(" | ".join(cells), sections.path))
            elif child.name in _HTML_BLOCKS or child.name in _HTML_CONTAINERS:
                flush(loose)
                nested = child.find(list(_HTML_BLOCKS | _HTML_CONTAINERS | set(_HTML_HEADINGS)))
                if nested is None:
                    text = child.get_text()
                    text = text.strip() if child.name == "pre" else _collapse(text)
                    if text:
                        blocks.append(Block(text, sections.path))
                else:
                    walk(child)
            else:  # inline markup (a, em, span, br...): part of the loose text around it
                loose.append(child.get_text())
        flush(loose)

    walk(soup)
    return blocks


def parse_pdf(content: bytes) -> list[Block]:
    """Returns the paragraphs of each page of a PDF (pypdf's text extraction), in section ``page N``.

    Raises:
        DocumentUnreadable: pypdf cannot read it, or it is encrypted with a password.
    """
    import pypdf  # on first use: the agent starts without it (0.25 s)

    try:
        reader = pypdf.PdfReader(io.BytesIO(content))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentUnreadable("the PDF is encrypted with a password")
        pages = [page.extract_text() or "" for page in reader.pages]
    except DocumentUnreadable:
        raise
    except Exception as error:  # pypdf raises many types (PdfReadError, ValueError, KeyError...)
        raise DocumentUnreadable(f"the PDF cannot be read: {type(error).__name__}") from None
    blocks = []
    for number, text in enumerate(pages, start=1):
        for part in _BLANK_LINES.split(text):
            paragraph = _collapse(part)
            if paragraph:
                blocks.append(Block(paragraph, f"page {number}"))
    return blocks


PARSERS: dict[str, Callable[[bytes], list[Block]]] = {
    TEXT: parse_text,
    MARKDOWN: parse_markdown,
    HTML: parse_html,
    PDF: parse_pdf,
}


def parse(mime_type: str, content: bytes) -> list[Block]:
    """Returns the blocks of a document of one of :data:`MEDIA_TYPES`.

    Raises:
        DocumentUnreadable: The content does not parse as ``mime_type``.
        KeyError: ``mime_type`` is not supported (the service checks it on create).
    """
    return PARSERS[base_media_type(mime_type)](content)
