"""Agent templates: the ready-made agents of ``templates.yaml``, read and checked once, at start-up."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import yaml

from services.agent import tools as catalog
from services.kit.errors import InvalidArgument
from services.kit.names import validate_id

#: The industries Orchestrall serves, in catalog order.
INDUSTRIES = ("finance", "healthcare", "retail", "manufacturing", "logistics", "technology")
TOOL_CHOICES = ("TOOL_CHOICE_AUTO", "TOOL_CHOICE_REQUIRED")
MAX_TEXT = 32_000


@dataclass(frozen=True, slots=True)
class AgentTemplate:
    """A ready-made agent.

    Attributes:
        id: The template ID; its resource name is ``agentTemplates/{id}``.
        industry: One of :data:`INDUSTRIES`.
        display_name: Human-readable name.
        description: What it does, in a sentence.
        instructions: The system instructions of an agent made from it.
        tools: The built-in tools it calls, ``tools/{tool}``.
        tool_choice: The proto enum name of how it uses them (``TOOL_CHOICE_REQUIRED``).
        example_input: An input to try it with.
    """

    id: str
    industry: str
    display_name: str
    description: str
    instructions: str
    tools: tuple[str, ...]
    tool_choice: str
    example_input: str

    @property
    def name(self) -> str:
        """Resource name, ``agentTemplates/{id}``."""
        return f"agentTemplates/{self.id}"


def parse(text: str) -> tuple[AgentTemplate, ...]:
    """Parses and checks a templates document (the shape of ``templates.yaml``).

    Returns:
        The templates, grouped by industry in :data:`INDUSTRIES` order, each group in file order.

    Raises:
        ValueError: A template lacks a field, has an unknown field, a bad or repeated ID, an
            unknown industry or tool choice, a tool not in the built-in catalog, or an empty
            or over-long text.
    """
    fields = set(AgentTemplate.__slots__) - {"tool_choice"}
    templates: list[AgentTemplate] = []
    for entry in yaml.safe_load(text)["templates"]:
        label = f"agent template {entry.get('id')!r}"
        if missing := fields - set(entry):
            raise ValueError(f"{label} lacks {sorted(missing)}")
        if unknown := set(entry) - fields - {"tool_choice"}:
            raise ValueError(f"{label} has unknown fields {sorted(unknown)}")
        try:
            validate_id(entry["id"], "id")
        except InvalidArgument:
            raise ValueError(f"{label}: the ID is not an AIP-122 ID") from None
        if entry["industry"] not in INDUSTRIES:
            raise ValueError(f"{label}: industry must be one of {', '.join(INDUSTRIES)}")
        if unknown_tools := [tool for tool in entry["tools"] if tool not in catalog.CATALOG]:
            raise ValueError(f"{label}: {unknown_tools} are not built-in tools")
        choice = entry.get("tool_choice", "TOOL_CHOICE_REQUIRED")
        if choice not in TOOL_CHOICES:
            raise ValueError(f"{label}: tool_choice must be one of {', '.join(TOOL_CHOICES)}")
        for key in ("display_name", "description", "instructions", "example_input"):
            if not isinstance(entry[key], str) or not entry[key].strip() or len(entry[key]) > MAX_TEXT:
                raise ValueError(f"{label}: {key} must be text of 1-{MAX_TEXT} characters")
        if any(t.id == entry["id"] for t in templates):
            raise ValueError(f"{label} is defined twice")
        templates.append(
            AgentTemplate(
                **{key: entry[key] for key in fields - {"tools"}},
                tools=tuple(entry["tools"]),
                tool_choice=choice,
            )
        )
    return tuple(sorted(templates, key=lambda t: INDUSTRIES.index(t.industry)))


@functools.cache
def templates() -> tuple[AgentTemplate, ...]:
    """The templates of ``templates.yaml``, parsed once (the file changes only with a release).

    Raises:
        ValueError: The file breaks a rule of :func:`parse` (the service does not start).
    """
    return parse(resources.files(__package__).joinpath("templates.yaml").read_text())


def offered(industry: str) -> list[AgentTemplate]:
    """Returns every template, those of ``industry`` (case and spaces ignored) first, else in order."""
    wanted = industry.strip().lower()
    return sorted(templates(), key=lambda t: t.industry != wanted)
