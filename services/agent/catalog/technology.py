"""Technology tools: static analysis of a code snippet, SLO burn rate, secret scanning."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
from ruff.__main__ import find_ruff_bin

from services.agent.catalog.bounds import at_most
from services.agent.tools import Tool, ToolError

#: Limits of one checker run, as the kit's sandbox gives tenant logic (services/kit/sandbox.py):
#: address space, CPU seconds and wall-clock seconds.
CHECK_MEMORY_BYTES = 512 * 1024 * 1024
CHECK_CPU_SECONDS = 10
CHECK_TIMEOUT_SECONDS = 15.0
MAX_SNIPPET_CHARACTERS = 50_000
#: ruff rule groups run on a snippet: pycodestyle errors, Pyflakes, flake8-bugbear, pyupgrade.
RUFF_RULES = "E4,E7,E9,F,B,UP"
_LIMITED = str(Path(__file__).with_name("limited.py"))
_RUFF = find_ruff_bin()


def _checked(argv: list[str], code: str, directory: str) -> str:
    """Runs a checker on ``code`` (its standard input) under the limits; returns its standard output.

    Raises:
        ToolError: The checker passed its deadline or failed.
    """
    command = [sys.executable, "-I", _LIMITED, str(CHECK_MEMORY_BYTES), str(CHECK_CPU_SECONDS), "--", *argv]
    try:
        done = subprocess.run(  # noqa: S603  (a fixed command; the snippet goes in as data on stdin)
            command,
            input=code,
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_SECONDS,
            cwd=directory,
            env={"PATH": "/usr/bin:/bin", "HOME": directory},
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ToolError(f"{Path(argv[0]).name} took over {CHECK_TIMEOUT_SECONDS:.0f} s") from None
    if not done.stdout.strip():
        raise ToolError(f"{Path(argv[0]).name} failed: {done.stderr.strip()[-300:]}")
    return done.stdout


def code_review(args: dict[str, Any]) -> dict[str, Any]:
    """Static analysis of a Python snippet with ruff (lint) and bandit (security), each in a limited process.

    ruff (Astral) runs the rule groups of :data:`RUFF_RULES`; bandit (PyCQA) its
    default security tests, which map to CWE entries. Both read the snippet from
    standard input in a fresh empty directory, with ``RLIMIT_AS`` and ``RLIMIT_CPU``
    set and a wall-clock deadline (:data:`CHECK_TIMEOUT_SECONDS`); the snippet is
    never executed.

    Returns:
        ``findings``: each with ``tool`` (ruff or bandit), ``code`` (a ruff rule or a
        bandit test ID), ``line``, ``message`` and ``severity`` (bandit's, or
        ``style`` for ruff); ``counts`` by tool; at most 100 findings, by line.

    Raises:
        ToolError: The snippet is empty or too long, or a checker failed or passed its deadline.
    """
    code = str(args.get("code", ""))
    if not code.strip():
        raise ToolError("give the code to review")
    if len(code) > MAX_SNIPPET_CHARACTERS:
        raise ToolError(f"the snippet has over {MAX_SNIPPET_CHARACTERS} characters")
    with tempfile.TemporaryDirectory(prefix="review-") as directory:
        linted = _checked(
            [
                _RUFF,
                "check",
                "--isolated",
                "--no-cache",
                "--select",
                RUFF_RULES,
                "--output-format",
                "json",
                "--stdin-filename",
                "snippet.py",
                "--exit-zero",
                "-",
            ],
            code,
            directory,
        )
        scanned = _checked([sys.executable, "-I", "-m", "bandit", "-f", "json", "-q", "-"], code, directory)
    findings = [
        {
            "tool": "ruff",
            "code": item["code"] or "E999",
            "line": item["location"]["row"],
            "message": item["message"][:300],
            "severity": "style",
        }
        for item in json.loads(linted)
    ]
    findings += [
        {
            "tool": "bandit",
            "code": item["test_id"],
            "line": item["line_number"],
            "message": item["issue_text"][:300],
            "severity": item["issue_severity"].lower(),
        }
        for item in json.loads(scanned)["results"]
    ]
    findings.sort(key=lambda finding: (finding["line"], finding["tool"], finding["code"]))
    counts = {"ruff": 0, "bandit": 0}
    for finding in findings:
        counts[finding["tool"]] += 1
    return {"findings": findings[:100], "counts": counts}


#: The multiwindow, multi-burn-rate alerts of the Google SRE Workbook, chapter 5
#: "Alerting on SLOs", table 5-8: (severity, long window s, short window s, burn rate,
#: budget consumed). The short window is 1/12 of the long one.
BURN_RATE_ALERTS = (
    ("page", 3600, 300, 14.4, 0.02),
    ("page", 21600, 1800, 6.0, 0.05),
    ("ticket", 259200, 21600, 1.0, 0.10),
)
SLO_PERIOD_SECONDS = 30 * 86400


def burn_rate(bad_fraction: float, slo: float) -> float:
    """Returns the error budget burn rate: the bad fraction over the budget ``1 - slo``.

    A burn rate of 1 spends the budget in exactly the SLO period (Google SRE Workbook, chapter 5).
    """
    return bad_fraction / (1 - slo)


def slo_burn_rate(args: dict[str, Any]) -> dict[str, Any]:
    """Latency SLO burn rates over the SRE Workbook's alerting windows, from evenly spaced latency samples.

    A sample is bad when its latency is over ``threshold_ms``; the samples are
    ``sample_interval_seconds`` apart, the newest last. For each alert of
    :data:`BURN_RATE_ALERTS` the burn rate of its long and short windows is
    computed over the samples in them, and the alert fires when both reach its
    rate (Google SRE Workbook, chapter 5, "6: Multiwindow, Multi-Burn-Rate
    Alerts"); a window longer than the samples uses all of them and says so.

    Returns:
        ``slo``, ``threshold_ms``, ``p50_ms``, ``p99_ms``, ``bad_fraction`` (all
        samples), ``budget_remaining`` (of the samples' span, 1 is untouched), and
        ``alerts``: per alert its ``severity``, ``long_window_s``, ``short_window_s``,
        ``burn_rate_threshold``, ``long_burn_rate``, ``short_burn_rate``, ``firing`` and
        ``complete`` (the samples cover its long window).

    Raises:
        ToolError: No samples, an SLO outside (0, 1), or an interval that is not positive.
    """
    at_most(args.get("latencies_ms") or [], "latencies_ms", 100_000)
    samples = np.asarray(args.get("latencies_ms") or [], dtype=float)
    slo = float(args.get("slo", 0.999))
    threshold = float(args.get("threshold_ms", 0))
    interval = float(args.get("sample_interval_seconds", 60))
    if samples.size == 0:
        raise ToolError("give at least one latency sample")
    if not 0 < slo < 1 or interval <= 0:
        raise ToolError("slo must be between 0 and 1 (e.g. 0.999) and the interval positive")
    bad = samples > threshold

    def rate(window_seconds: int) -> float:
        count = max(1, min(bad.size, math.ceil(window_seconds / interval)))
        # Rounded: 1 - 0.999 is not exactly 0.001, and 14.4 must reach 14.4.
        return round(burn_rate(float(bad[-count:].mean()), slo), 9)

    alerts = []
    for severity, long_window, short_window, threshold_rate, _ in BURN_RATE_ALERTS:
        long_rate, short_rate = rate(long_window), rate(short_window)
        alerts.append(
            {
                "severity": severity,
                "long_window_s": long_window,
                "short_window_s": short_window,
                "burn_rate_threshold": threshold_rate,
                "long_burn_rate": round(long_rate, 3),
                "short_burn_rate": round(short_rate, 3),
                "firing": long_rate >= threshold_rate and short_rate >= threshold_rate,
                "complete": samples.size * interval >= long_window,
            }
        )
    span = samples.size * interval
    spent = burn_rate(float(bad.mean()), slo) * span / SLO_PERIOD_SECONDS
    return {
        "slo": slo,
        "threshold_ms": threshold,
        "p50_ms": round(float(np.percentile(samples, 50)), 3),
        "p99_ms": round(float(np.percentile(samples, 99)), 3),
        "bad_fraction": round(float(bad.mean()), 6),
        "budget_remaining": round(1 - spent, 6),
        "alerts": alerts,
    }


# detect-secrets keeps its plugin settings in module state: one scan at a time.
_SECRETS_LOCK = threading.Lock()


def secret_scan(args: dict[str, Any]) -> dict[str, Any]:
    """Finds credentials in text (code, configuration, logs) with Yelp's detect-secrets default plugins.

    Plugins: AWS, Azure, GitHub, GitLab, Slack, Stripe, Twilio, private keys, JWTs,
    basic-auth URLs, keyword assignments (``password = ...``) and high-entropy
    strings, with its default filters against false positives (which read the file
    name's extension: ``file_name``, default ``snippet.txt``). The text is scanned as
    a file in a fresh temporary directory. The secret itself is never returned: a
    finding names the line and type only.

    Returns:
        ``findings``: each with ``line`` (1-based) and ``type``; ``lines_scanned``;
        ``clean`` (nothing found). At most 100 findings.

    Raises:
        ToolError: Empty text, or over the size limit.
    """
    text = str(args.get("text", ""))
    if not text.strip():
        raise ToolError("give the text to scan")
    if len(text) > MAX_SNIPPET_CHARACTERS:
        raise ToolError(f"the text has over {MAX_SNIPPET_CHARACTERS} characters")
    lines = text.splitlines()
    name = Path(str(args.get("file_name") or "")[:100]).name
    if name in ("", ".", ".."):  # only a plain file name in the scan's own directory
        name = "snippet.txt"
    # Imported on first use: the agent service starts without loading detect-secrets.
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    collection = SecretsCollection()
    with tempfile.TemporaryDirectory(prefix="secrets-") as directory:
        path = Path(directory, name)
        path.write_text(text)
        with _SECRETS_LOCK, default_settings():
            collection.scan_file(str(path))
    found = sorted({(secret.line_number, secret.type) for _, secret in collection})
    findings = [{"line": line, "type": kind} for line, kind in found]
    return {"findings": findings[:100], "lines_scanned": len(lines), "clean": not findings}


TOOLS: tuple[Tool, ...] = (
    Tool(
        id="code_review",
        description=(
            "Static analysis of a Python code snippet with ruff (bugs, style) and bandit (security "
            "issues); lists findings by line. The code is not run."
        ),
        parameters={
            "type": "object",
            "properties": {"code": {"type": "string", "minLength": 1}},
            "required": ["code"],
        },
        function=code_review,
    ),
    Tool(
        id="slo_burn_rate",
        description=(
            "Error-budget burn rates of a latency SLO over the Google SRE multiwindow alerting windows, "
            "from latency samples in milliseconds; says which page or ticket alerts fire."
        ),
        parameters={
            "type": "object",
            "properties": {
                "latencies_ms": {
                    "type": "array",
                    "items": {"type": "number"},
                    "minItems": 1,
                },
                "threshold_ms": {"type": "number", "minimum": 0},
                "slo": {"type": "number", "enum": [0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999]},
                "sample_interval_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
            },
            "required": ["latencies_ms", "threshold_ms", "slo"],
        },
        function=slo_burn_rate,
    ),
    Tool(
        id="secret_scan",
        description=(
            "Scans text (source code, configuration, logs) for leaked credentials: cloud keys, tokens, "
            "private keys, passwords; names the line and kind of each."
        ),
        parameters={
            "type": "object",
            "properties": {
                "text": {"type": "string", "minLength": 1},
                "file_name": {"type": "string"},
            },
            "required": ["text"],
        },
        function=secret_scan,
    ),
)
