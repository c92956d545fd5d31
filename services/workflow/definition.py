"""A workflow definition as data: its graph, its checks and its drawing.

A revision is stored as the JSON mapping of the ``Workflow`` message's
definition fields (:func:`to_json`, proto field names), so the contract is its
schema and the engine reads it back as the typed message (:func:`from_json`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import json_format

from orchestrall.workflow.v1 import resources_pb2 as res
from services.kit.errors import FieldViolation
from services.workflow import expressions, templates

_STEP_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
#: The definition fields of ``Workflow`` a revision holds.
DEFINITION_FIELDS = ("steps", "output_template", "run_timeout")
DEFAULT_RUN_TIMEOUT_SECONDS = 86_400.0
DEFAULT_STEP_TIMEOUT_SECONDS = 300.0
DEFAULT_APPROVAL_TIMEOUT_SECONDS = 7 * 86_400.0


_NOTIFICATION_CHANNEL = re.compile(r"^tenants/[^/]+/notificationChannels/[^/]+$")


def is_notification_channel(channel: str) -> bool:
    """Whether a notification step's ``channel`` names a notification channel (else: free text)."""
    return bool(_NOTIFICATION_CHANNEL.match(channel))


def to_json(workflow: res.Workflow) -> dict[str, Any]:
    """The definition fields of a workflow as JSON (proto field names)."""
    definition = res.Workflow()
    for field in DEFINITION_FIELDS:
        if field == "steps":
            definition.steps.extend(workflow.steps)
        elif field == "run_timeout":
            if workflow.HasField("run_timeout"):
                definition.run_timeout.CopyFrom(workflow.run_timeout)
        else:
            setattr(definition, field, getattr(workflow, field))
    return json_format.MessageToDict(definition, preserving_proto_field_name=True)


def from_json(definition: Mapping[str, Any]) -> res.Workflow:
    """A stored definition as the ``Workflow`` message (definition fields only)."""
    return json_format.ParseDict(definition, res.Workflow())


def kind(step: res.Workflow.Step) -> str:
    """The step's kind: the name of the field set in its ``kind`` oneof."""
    return step.WhichOneof("kind") or ""


@dataclasses.dataclass(frozen=True)
class Graph:
    """The steps of a valid definition and their order.

    Attributes:
        steps: Each step by ID.
        order: res.Workflow.Step IDs in the definition's order.
        dependents: The steps that depend on each step directly.
    """

    steps: dict[str, res.Workflow.Step]
    order: tuple[str, ...]
    dependents: dict[str, tuple[str, ...]]

    @classmethod
    def of(cls, workflow: res.Workflow) -> Graph:
        """The graph of a definition that passed :func:`check`."""
        steps = {step.id: step for step in workflow.steps}
        dependents: dict[str, list[str]] = {step_id: [] for step_id in steps}
        for step in workflow.steps:
            for dependency in step.depends_on:
                dependents[dependency].append(step.id)
        return cls(steps, tuple(steps), {k: tuple(v) for k, v in dependents.items()})

    def ancestors(self, step_id: str) -> set[str]:
        """The steps that end before ``step_id`` starts: its dependencies, directly or not."""
        seen: set[str] = set()
        stack = list(self.steps[step_id].depends_on)
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.steps[current].depends_on)
        return seen


def _cycle(workflow: res.Workflow) -> list[str]:
    """Step IDs on or behind a cycle (Kahn's algorithm leaves them unsorted); empty when acyclic."""
    remaining = {step.id: set(step.depends_on) for step in workflow.steps}
    progress = True
    while progress:
        progress = False
        for step_id, deps in list(remaining.items()):
            if not deps & remaining.keys():
                del remaining[step_id]
                progress = True
    return [step.id for step in workflow.steps if step.id in remaining]


def _check_template(
    template: str, path: str, earlier: Iterable[str], variables: Iterable[str] = templates.BASE_VARIABLES
) -> list[FieldViolation]:
    try:
        templates.check(template or templates.DEFAULT_TEMPLATE, set(earlier), set(variables))
    except templates.TemplateProblem as problem:
        return [FieldViolation(path, str(problem))]
    return []


def _check_expression(
    expression: str, path: str, outputs: Mapping[str, str], want: type, dynamic: bool = False
) -> list[FieldViolation]:
    if not expression.strip():
        return [FieldViolation(path, "must not be blank")]
    for referenced in re.findall(r"\bsteps\.([A-Za-z_][A-Za-z0-9_]*)", expression):
        if referenced not in outputs:
            return [
                FieldViolation(path, f"refers to step {referenced!r}, which does not run before this step")
            ]
    try:
        expressions.check(expression, outputs, want, dynamic)
    except expressions.ExpressionProblem as problem:
        return [FieldViolation(path, str(problem))]
    return []


def _check_task(
    task: res.Workflow.AgentRun | res.Workflow.ToolCall,
    path: str,
    earlier: set[str],
    variables: Iterable[str],
) -> list[FieldViolation]:
    if isinstance(task, res.Workflow.AgentRun):
        return _check_template(task.input_template, f"{path}.input_template", earlier, variables)
    violations = []
    if not re.fullmatch(
        r"tools/[a-z][a-z0-9_-]{0,62}|tenants/[^/]+/httpTools/[a-z][a-z0-9-]{0,62}", task.tool
    ):
        violations.append(
            FieldViolation(
                f"{path}.tool",
                "must be a built-in tool, tools/{tool}, or an HTTP tool, tenants/{t}/httpTools/{tool}",
            )
        )
    if task.arguments_template:
        violations += _check_template(
            task.arguments_template, f"{path}.arguments_template", earlier, variables
        )
    return violations


def _check_step(
    step: res.Workflow.Step, path: str, graph: Graph, kinds: Mapping[str, str]
) -> list[FieldViolation]:
    """The checks of one step's own fields, given a valid graph."""
    earlier = graph.ancestors(step.id)
    outputs = {step_id: kinds[step_id] for step_id in earlier}
    which = kind(step)
    violations: list[FieldViolation] = []
    if which == "agent_run":
        violations += _check_task(step.agent_run, f"{path}.agent_run", earlier, templates.BASE_VARIABLES)
    elif which == "tool_call":
        violations += _check_task(step.tool_call, f"{path}.tool_call", earlier, templates.BASE_VARIABLES)
    elif which == "condition":
        violations += _check_expression(
            step.condition.expression, f"{path}.condition.expression", outputs, bool
        )
        for field in ("then_steps", "else_steps"):
            for i, branch in enumerate(getattr(step.condition, field)):
                target = graph.steps.get(branch)
                if target is None:
                    violations.append(
                        FieldViolation(f"{path}.condition.{field}[{i}]", f"names no step {branch!r}")
                    )
                elif step.id not in target.depends_on:
                    violations.append(
                        FieldViolation(
                            f"{path}.condition.{field}[{i}]", f"step {branch!r} must depend on {step.id!r}"
                        )
                    )
    elif which == "map":
        violations += _check_expression(step.map.items, f"{path}.map.items", outputs, list)
        task = step.map.agent_run if step.map.HasField("agent_run") else step.map.tool_call
        task_path = f"{path}.map.{step.map.WhichOneof('task')}"
        violations += _check_task(task, task_path, earlier, templates.BASE_VARIABLES | {"item", "index"})
    elif which == "wait" and step.wait.WhichOneof("until") == "time":
        violations += _check_expression(step.wait.time, f"{path}.wait.time", outputs, dt.datetime)
    elif which == "approval":
        violations += _check_template(
            step.approval.prompt_template, f"{path}.approval.prompt_template", earlier
        )
    elif which == "notification":
        violations += _check_template(
            step.notification.message_template, f"{path}.notification.message_template", earlier
        )
        if not step.notification.channel.strip():
            violations.append(FieldViolation(f"{path}.notification.channel", "must not be blank"))
        elif step.notification.channel.startswith("tenants/") and not is_notification_channel(
            step.notification.channel
        ):
            violations.append(
                FieldViolation(
                    f"{path}.notification.channel",
                    "must be tenants/{tenant}/notificationChannels/{notification_channel} or free text",
                )
            )
    elif which == "sub_workflow":
        violations += _check_template(
            step.sub_workflow.input_template, f"{path}.sub_workflow.input_template", earlier
        )
    if step.HasField("compensation"):
        action = step.compensation.WhichOneof("action")
        comp_path = f"{path}.compensation.{action}"
        variables = templates.BASE_VARIABLES | {"output"}
        if action == "notification":
            violations += _check_template(
                step.compensation.notification.message_template,
                f"{comp_path}.message_template",
                earlier,
                variables,
            )
        elif action is not None:
            violations += _check_task(getattr(step.compensation, action), comp_path, earlier, variables)
    return violations


def check(workflow: res.Workflow) -> list[FieldViolation]:
    """Checks a definition: IDs, references, the graph, templates and expressions.

    The references to agents, tools and other workflows are looked up by the
    service afterwards; this checks only what the definition itself says.

    Returns:
        A violation per bad field, paths from ``workflow``; empty when valid.
    """
    if not workflow.steps:  # the most steps is the contract's rule, checked by the guard
        return [FieldViolation("workflow.steps", "must have at least one step")]
    violations: list[FieldViolation] = []
    ids = [step.id for step in workflow.steps]
    for i, step in enumerate(workflow.steps):
        path = f"workflow.steps[{i}]"
        if not _STEP_ID.match(step.id):
            violations.append(
                FieldViolation(f"{path}.id", "must be 1-63 of a-z, 0-9 and _, starting with a letter")
            )
        elif ids.index(step.id) != i:
            violations.append(FieldViolation(f"{path}.id", f"duplicates step {step.id!r}"))
        if not kind(step):
            violations.append(FieldViolation(f"{path}.kind", "must be set"))
        for j, dependency in enumerate(step.depends_on):
            if dependency not in ids:
                violations.append(FieldViolation(f"{path}.depends_on[{j}]", f"names no step {dependency!r}"))
            elif dependency == step.id or list(step.depends_on).index(dependency) != j:
                violations.append(FieldViolation(f"{path}.depends_on[{j}]", "names this step or repeats"))
    if violations:
        return violations
    cyclic = _cycle(workflow)
    if cyclic:
        return [
            FieldViolation(f"workflow.steps[{ids.index(step_id)}].depends_on", "is part of a cycle")
            for step_id in cyclic
        ]
    graph = Graph.of(workflow)
    kinds = {step.id: kind(step) for step in workflow.steps}
    for i, step in enumerate(workflow.steps):
        violations += _check_step(step, f"workflow.steps[{i}]", graph, kinds)
    if workflow.output_template:
        violations += _check_template(workflow.output_template, "workflow.output_template", set(ids))
    return violations


# Mermaid shapes per kind (flowchart syntax): a condition is a rhombus, a wait and an
# approval are rounded, a map a subroutine box, a sub-workflow a double box.
_SHAPES = {
    "condition": ("{", "}"),
    "wait": ("([", "])"),
    "approval": ("([", "])"),
    "map": ("[[", "]]"),
    "sub_workflow": ("[[", "]]"),
}
_STATE_STYLE = {
    "SUCCEEDED": "fill:#d3f9d8,stroke:#2b8a3e",
    "FAILED": "fill:#ffe3e3,stroke:#c92a2a",
    "RUNNING": "fill:#d0ebff,stroke:#1864ab",
    "WAITING": "fill:#fff3bf,stroke:#e67700",
    "SKIPPED": "fill:#f1f3f5,stroke:#868e96,stroke-dasharray:4",
    "CANCELLED": "fill:#f1f3f5,stroke:#495057",
    "PENDING": "fill:#ffffff,stroke:#adb5bd",
}


def mermaid(workflow: res.Workflow, states: Mapping[str, str]) -> str:
    """Draws a definition with each step's state as a Mermaid ``flowchart TD``.

    Args:
        workflow: The definition.
        states: Each step's state (a ``RunState`` value such as ``SUCCEEDED``) by ID.

    Returns:
        The flowchart text: a node per step labelled with its kind, ID and state, an
        edge per dependency (``true``/``false`` out of a condition's branches), and a
        ``classDef`` per state.
    """
    lines = ["flowchart TD"]
    for step in workflow.steps:
        opening, closing = _SHAPES.get(kind(step), ("[", "]"))
        state = states.get(step.id, "PENDING")
        lines.append(f'  {step.id}{opening}"{kind(step)}: {step.id}<br/>{state}"{closing}:::{state.lower()}')
    for step in workflow.steps:
        for dependency in step.depends_on:
            source = next(s for s in workflow.steps if s.id == dependency)
            label = ""
            if kind(source) == "condition":
                if step.id in source.condition.then_steps:
                    label = "|true|"
                elif step.id in source.condition.else_steps:
                    label = "|false|"
            lines.append(f"  {dependency} -->{label} {step.id}")
    for state, style in _STATE_STYLE.items():
        lines.append(f"  classDef {state.lower()} {style}")
    return "\n".join(lines) + "\n"
