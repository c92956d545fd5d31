"""What a run's work is metered as: its usage events, derived from what the run records.

Every model call, tool call and run is metered exactly once, through the usage outbox
(:mod:`services.kit.usage`): its events are written in the same transaction as the
state change that records the work, and have IDs that derive from the work, so a
retry, a second relay or a settlement carrying them again counts nothing more.

* A **model call** is recorded when its ``model_call`` run event is stored (with a
  batch of events, or with the stretch's outcome): events
  ``model-call/{sequence}/model_calls`` (1), ``.../model_input_tokens`` and
  ``.../model_output_tokens`` (those above 0), ``{sequence}`` being the event's.
* A model call **cut off** (the run cancelled or timed out while the model streamed)
  has no ``model_call`` event, but the run's counters hold what it took (the tokens
  streamed so far, the prompt estimated); it is metered with the stretch's outcome as
  ``model-call/{sequence}/...``, ``{sequence}`` the one its event would have had.
* A **tool call** is recorded when its ``tool_call_finished`` event is stored:
  ``tool-call/{sequence}/tool_calls`` (1).
* A **run** is metered when it is created, in the transaction that inserts it:
  ``run/agent_runs`` (1). A run counts once it started, however it ends (succeeded,
  failed, cancelled, or interrupted by the lease sweeper when its replica died), and a
  run waiting for approvals counts while it waits; a start refused (too many runs, the
  agent deleted meanwhile) rolls its event back with it.

The events' ``source`` is the run's, ``//agent.orchestrall.dev/tenants/{t}/agents/{a}/runs/{r}``
(a URI reference, CloudEvents 1.0 section 3.1.1), their ``subject`` the run's name, and
their ``data`` carries ``agent``, ``model`` and ``principal`` beside ``quantity``, which
billing's built-in meters group by. A run killed with its replica is metered as far as
it was recorded: its start and what it stored before the crash; the sweeper that fails
it adds nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from orchestrall.agent.v1 import resources_pb2 as res
from services.agent.models import RunRow
from services.kit.timestamps import from_timestamp
from services.kit.usage import UsageEventRow, meter_event

#: The CloudEvents ``source`` of every run's usage events is this, then the run's name.
SOURCE_PREFIX = "//agent.orchestrall.dev/"


def run_name(run: RunRow) -> str:
    """Returns the run's resource name, ``tenants/{t}/agents/{a}/runs/{r}``."""
    return f"tenants/{run.tenant_id}/agents/{run.agent_id}/runs/{run.id}"


def source_of(run: RunRow) -> str:
    """Returns the CloudEvents ``source`` of the run's usage events."""
    return SOURCE_PREFIX + run_name(run)


def _event(
    run: RunRow, step: str, meter: str, quantity: float, model: str, time: dt.datetime
) -> UsageEventRow:
    dimensions = {
        "agent": f"tenants/{run.tenant_id}/agents/{run.agent_id}",
        "model": model,
        "principal": run.principal,
    }
    return meter_event(
        run.tenant_id, source_of(run), f"{step}/{meter}", meter, quantity, run_name(run), time, dimensions
    )


def usage_of_events(run: RunRow, events: Iterable[res.RunEvent]) -> list[UsageEventRow]:
    """Returns the usage events of a batch of the run's events: its model calls and finished tool calls.

    Args:
        run: The run.
        events: Events about to be stored, each with its ``sequence``.
    """
    found: list[UsageEventRow] = []
    model = run.model
    for event in events:
        kind = event.WhichOneof("event")
        time = from_timestamp(event.create_time)
        if kind == "model_call":
            call = event.model_call
            model = call.model or model
            step = f"model-call/{event.sequence}"
            found.append(_event(run, step, "model_calls", 1, model, time))
            for meter, tokens in (
                ("model_input_tokens", call.input_tokens),
                ("model_output_tokens", call.output_tokens),
            ):
                if tokens > 0:
                    found.append(_event(run, step, meter, tokens, model, time))
        elif kind == "tool_call_finished":
            found.append(_event(run, f"tool-call/{event.sequence}", "tool_calls", 1, model, time))
    return found


def cut_off(
    run: RunRow,
    events: Iterable[res.RunEvent],
    counted: tuple[int, int, int],
    sequence: int,
    time: dt.datetime,
) -> list[UsageEventRow]:
    """Returns the usage of a stretch's model call cut off before its ``model_call`` event, if any.

    Args:
        run: The run as the stretch started.
        events: The stretch's events.
        counted: The stretch's model calls, input and output tokens as its outcome counts them.
        sequence: The sequence the cut-off call's event would have had.
        time: When it was cut off.

    Returns:
        What ``counted`` holds beyond the ``model_call`` events (nothing when it holds no more).
    """
    calls = [e.model_call for e in events if e.WhichOneof("event") == "model_call"]
    more_calls = counted[0] - len(calls)
    if more_calls <= 0:
        return []
    step = f"model-call/{sequence}"
    found = [_event(run, step, "model_calls", more_calls, run.model, time)]
    for meter, total, recorded in (
        ("model_input_tokens", counted[1], sum(c.input_tokens for c in calls)),
        ("model_output_tokens", counted[2], sum(c.output_tokens for c in calls)),
    ):
        if total > recorded:
            found.append(_event(run, step, meter, total - recorded, run.model, time))
    return found


def run_started(run: RunRow) -> UsageEventRow:
    """Returns the usage event of a new run, ``run/agent_runs`` (1), at its ``create_time``."""
    return _event(run, "run", "agent_runs", 1, run.model, run.create_time)
