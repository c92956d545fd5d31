"""Step templates: sandboxed Jinja over ``input``, ``input_json`` and ``steps.<id>.output``.

Inside a map's task ``item`` and ``index`` are variables too, and in a
compensation ``output`` (the step's own output).

The sandbox (``jinja2.sandbox``) keeps templates from reaching Python
internals; ``StrictUndefined`` makes a reference to a missing value an error
instead of an empty string.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

DEFAULT_TEMPLATE = "{{ input }}"
#: A rendered template is an agent run's input, which holds at most this many characters.
MAX_RENDERED = 32_000
_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_STEP_REF = re.compile(r"\bsteps\.([A-Za-z_][A-Za-z0-9_]*)")


class TemplateProblem(Exception):
    """A template cannot be parsed or refers to something it may not."""


BASE_VARIABLES = frozenset({"input", "input_json", "steps"})


def check(template: str, earlier_steps: Collection[str], variables: Collection[str] = BASE_VARIABLES) -> None:
    """Checks that a template parses and refers only to its variables and to steps that run before.

    Args:
        template: The template.
        earlier_steps: The steps that end before this one (its dependencies, directly or not).
        variables: The names it may use.

    Raises:
        TemplateProblem: Syntax error, unknown variable or reference to a step that
            does not run before this one.
    """
    try:
        names = meta.find_undeclared_variables(_ENV.parse(template))
    except TemplateError as error:
        raise TemplateProblem(f"does not parse: {error}") from None
    unknown = names - set(variables)
    if unknown:
        raise TemplateProblem(f"unknown variables {sorted(unknown)}; use {', '.join(sorted(variables))}")
    for step_id in _STEP_REF.findall(template):
        if step_id not in earlier_steps:
            raise TemplateProblem(f"refers to step {step_id!r}, which does not run before this step")


def render(template: str, context: dict[str, Any]) -> str:
    """Renders a template; the engine runs it in a sandbox process with a deadline.

    Args:
        template: The template; empty means ``{{ input }}``.
        context: ``input``, ``input_json``, ``steps`` (``{id: {"output": value}}``) and
            any of ``item``, ``index``, ``output``.

    Returns:
        The rendered input, at most :data:`MAX_RENDERED` characters.

    Raises:
        TemplateProblem: The template failed at render time, ran out of memory, or
            rendered more than :data:`MAX_RENDERED` characters.
    """
    parts: list[str] = []
    size = 0
    try:
        # Streamed, so a template that would render megabytes stops at the bound.
        for part in _ENV.from_string(template or DEFAULT_TEMPLATE).generate(context):
            size += len(part)
            if size > MAX_RENDERED:
                raise TemplateProblem(
                    f"renders more than {MAX_RENDERED} characters, the most a step's input may hold"
                )
            parts.append(part)
    except TemplateError as error:
        raise TemplateProblem(str(error)) from None
    except MemoryError:
        raise TemplateProblem("ran out of memory while rendering") from None
    return "".join(parts)
