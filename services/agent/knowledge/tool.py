"""The ``knowledge_search`` tool: a knowledge base an agent names in its ``tools``, offered to the model.

An agent's tool ``tenants/{tenant}/knowledgeBases/{knowledge_base}`` is offered as the
function ``knowledge_search`` (``knowledge_search_{id}`` for each when the agent names
several). The model passes a ``query``; the result is the closest chunks with their
document, section and score, and the model is asked to cite the document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

from services.agent.knowledge import store
from services.agent.knowledge.search import DOCUMENT, Searcher
from services.agent.tools import ToolError
from services.kit.db import Database
from services.kit.errors import DomainError

FUNCTION_NAME = "knowledge_search"
#: Chunks a tool call returns.
TOOL_RESULTS = 4
#: The most characters of a chunk's text a tool call returns.
TOOL_TEXT_CHARS = 1200
_NAME = re.compile(r"^tenants/([a-z][a-z0-9-]{0,62})/knowledgeBases/([a-z][a-z0-9-]{0,62})$")
PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "query": {
            "type": "string",
            "minLength": 1,
            "maxLength": 500,
            "description": "What to look up, in words.",
        }
    },
    "required": ["query"],
}
_VALIDATOR = Draft202012Validator(PARAMETERS)


def parse_tool_name(name: str) -> tuple[str, str] | None:
    """Returns ``(tenant, knowledge base ID)`` of a knowledge base tool name, or None for another name."""
    match = _NAME.match(name)
    return None if match is None else (match.group(1), match.group(2))


def is_knowledge_tool(name: str) -> bool:
    """Returns whether ``name`` names a knowledge base (``tenants/{t}/knowledgeBases/{kb}``)."""
    return _NAME.match(name) is not None


@dataclass(frozen=True)
class KnowledgeTool:
    """A knowledge base as a run offers and calls it (the runner's ``RunTool``).

    Attributes:
        name: The knowledge base's resource name.
        function_name: What the model calls it by.
        description: What it searches, for the model.
        parameters: JSON Schema of its arguments (a ``query``).
        validator: Checks arguments against ``parameters``.
        searcher: Searches; None when the knowledge base cannot be searched (``failure``).
        tenant_id: The agent's tenant.
        failure: Why every call fails (the knowledge base is not the tenant's, or is gone).
    """

    name: str
    function_name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: PARAMETERS)
    validator: Draft202012Validator = field(default_factory=lambda: _VALIDATOR, repr=False, compare=False)
    searcher: Searcher | None = field(default=None, repr=False, compare=False)
    tenant_id: str = ""
    failure: str = ""

    async def call(self, arguments: dict[str, Any]) -> Any:
        """Searches with the validated ``arguments``.

        Returns:
            ``{"knowledge_base": title, "results": [{"document": title, "document_name":
            name, "section", "chunk", "text", "score"}, ...]}``, highest score first
            (``chunk``: the chunk's index in its document).

        Raises:
            ToolError: The knowledge base cannot be searched, or the search failed.
        """
        parsed = parse_tool_name(self.name)
        if self.failure or self.searcher is None or parsed is None:
            raise ToolError(self.failure or f"{self.name} cannot be searched")
        try:
            kb, hits = await self.searcher.search(
                self.tenant_id, parsed[1], str(arguments["query"]), TOOL_RESULTS
            )
        except DomainError as error:
            raise ToolError(str(error)) from None
        return {
            "knowledge_base": kb.display_name or kb.id,
            "results": [
                {
                    "document": hit.title,
                    "document_name": DOCUMENT.format(self.tenant_id, kb.id, hit.document_id),
                    "section": hit.section,
                    "chunk": hit.position,
                    "text": hit.text[:TOOL_TEXT_CHARS],
                    "score": round(hit.score, 3),
                }
                for hit in hits
            ],
        }


def citations(tool_calls: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Returns the passages the model was given by the successful knowledge base calls of ``tool_calls``.

    ``tool_calls`` are a run's recorded calls (``id``, ``tool``, ``result`` as the
    model received it, ``failed``); the sources are read back from each result, so a
    run cites what its model saw, whatever its reply says.

    Returns:
        ``res.Citation`` fields, one per result passage, in call order and, within a
        call, in the result's order (highest score first).
    """
    cited: list[dict[str, Any]] = []
    for call in tool_calls:
        if call.get("failed") or not is_knowledge_tool(str(call.get("tool", ""))):
            continue
        try:
            result = json.loads(call.get("result") or "")
        except ValueError:
            continue
        passages = result.get("results") if isinstance(result, dict) else None
        for passage in passages if isinstance(passages, list) else []:
            if not isinstance(passage, dict) or not passage.get("document_name"):
                continue
            cited.append(
                {
                    "tool_call_id": str(call.get("id", "")),
                    "document": str(passage["document_name"]),
                    "document_display_name": str(passage.get("document", "")),
                    "section": str(passage.get("section", "")),
                    "chunk_index": int(passage.get("chunk", 0)),
                    "score": float(passage.get("score", 0.0)),
                }
            )
    return cited


def _description(title: str, about: str) -> str:
    text = f"Searches the knowledge base {title!r} and returns the passages closest to a query"
    if about:
        text += f" ({about[:300]})"
    return text + ". Answer from the passages and cite the document of each passage you use."


async def resolve_tools(
    db: Database, searcher: Searcher, tenant_id: str, tool_names: Sequence[str]
) -> list[KnowledgeTool]:
    """Returns the knowledge base tools among an agent's tools, in the agent's order.

    A knowledge base of another tenant, or one that is gone, is still returned with
    ``failure`` set: the model may call it and gets the reason as the tool's error.
    """
    wanted = [(name, parse_tool_name(name)) for name in tool_names if is_knowledge_tool(name)]
    if not wanted:
        return []
    ids = [parsed[1] for _, parsed in wanted if parsed is not None and parsed[0] == tenant_id]
    found = {kb.id: kb for kb in await db.read(tenant_id, store.get_knowledge_bases, ids)}
    several = len(wanted) > 1
    tools = []
    for name, parsed in wanted:
        assert parsed is not None
        kb_id = parsed[1]
        function_name = f"{FUNCTION_NAME}_{kb_id.replace('-', '_')}"[:64] if several else FUNCTION_NAME
        kb = found.get(kb_id) if parsed[0] == tenant_id else None
        if kb is None:
            failure = f"{name} is not a knowledge base of tenants/{tenant_id}"
            tools.append(KnowledgeTool(name, function_name, _description(kb_id, ""), failure=failure))
            continue
        title = kb.display_name or kb.id
        tools.append(
            KnowledgeTool(
                name,
                function_name,
                _description(title, kb.description),
                searcher=searcher,
                tenant_id=tenant_id,
            )
        )
    return tools
