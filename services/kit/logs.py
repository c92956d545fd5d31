"""Logs: every log record a JSON line, and the one line per RPC the kit's guard writes.

One line per RPC (:class:`RpcLog`, logger ``orchestrall.rpc``: method, status,
duration, tenant, principal, trace and span ids), and every other log record
in the same shape (:class:`JsonFormatter`). Requests, tokens and secrets are
never logged; string fields are cut to :data:`MAX_LOGGED_TEXT`.
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import os
import threading
import time
from typing import Any

from opentelemetry import trace

#: Log fields are cut to this many characters (a 10 KB tenant string is not logged whole).
MAX_LOGGED_TEXT = 200
_log_stream: io.TextIOBase | None = None


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time (UTC), level, logger, message, trace ids.

    The message is cut to :data:`MAX_LOGGED_TEXT`; an exception's traceback is added whole.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Returns the record as one line of JSON."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": _cut(record.getMessage()),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            line["trace_id"] = format(context.trace_id, "032x")
            line["span_id"] = format(context.span_id, "016x")
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_LOGGED_TEXT else text[:MAX_LOGGED_TEXT] + "…"


class RpcLog:
    """The one JSON line per RPC, written without the logging module's per-record machinery.

    The line has the shape of :class:`JsonFormatter`'s (``time``, ``level``, ``logger``
    ``orchestrall.rpc``, ``message``, then ``rpc.method``, ``rpc.grpc.status_code``,
    ``duration_ms``, ``tenant.id``, ``principal``, ``trace_id``, ``span_id``), built from
    pieces encoded once per method and second, and buffered like every log line
    (:func:`configure_logging`). Through ``logging`` a line cost a served call about
    100 µs (``make bench``; four times what the same call costs in a loop outside a
    server, and no less with buffered writes or a writer thread); this way about 30.

    Args:
        traced: Whether calls run in spans (:func:`services.kit.tracing.tracing_enabled`, fixed at
            start-up); without, the line has no trace and span ids and no span is looked for.
    """

    #: Encoded (tenant, principal) pairs kept; past this many the cache starts afresh.
    MAX_CALLERS = 4096

    def __init__(self, traced: bool = True) -> None:
        self._traced = traced
        self._methods: dict[tuple[str, str], str] = {}
        # (tenant, principal) -> their JSON fields of the line: a pure function of the pair, nothing to
        # invalidate; bounded by MAX_CALLERS.
        self._callers: dict[tuple[str | None, str | None], str] = {}
        self._second = -1
        self._stamp = ""

    def write(
        self, method: str, code: str, seconds: float, tenant: str | None, principal: str | None
    ) -> None:
        """Writes the line of one finished RPC."""
        stream = _log_stream  # nothing is written before configure_logging sets it up
        if stream is None:
            return
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        head = self._methods.get((method, code))
        if head is None:
            message = json.dumps(f"{method} {code}")
            head = self._methods[(method, code)] = (
                f'"level": "INFO", "logger": "orchestrall.rpc", "message": {message}, '
                f'"rpc.method": {json.dumps(method)}, "rpc.grpc.status_code": "{code}"'
            )
        caller = self._callers.get((tenant, principal))
        if caller is None:
            if len(self._callers) >= self.MAX_CALLERS:
                self._callers.clear()
            caller = self._callers[(tenant, principal)] = (
                f'"tenant.id": {json.dumps(tenant)}, "principal": {json.dumps(principal)}'
            )
        ids = ""
        if self._traced:
            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                ids = f', "trace_id": "{context.trace_id:032x}", "span_id": "{context.span_id:016x}"'
        stream.write(
            f'{{"time": "{self._stamp}.{int(now % 1 * 1000):03d}Z", {head}, '
            f'"duration_ms": {seconds * 1000:.3f}, {caller}{ids}}}\n'
        )


#: How often buffered log lines are written out, in seconds.
LOG_FLUSH_SECONDS = 0.2


class _BufferedHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes into a 64 KiB buffer that a timer thread flushes (and any error record at once)."""

    def flush(self) -> None:
        """Flushes only for records of level ERROR and above (see :meth:`emit`)."""

    def emit(self, record: logging.LogRecord) -> None:
        """Formats and buffers ``record``; writes through at once when it is an error."""
        super().emit(record)
        if record.levelno >= logging.ERROR:
            self.force_flush()

    def force_flush(self) -> None:
        """Writes out the buffer."""
        with self.lock:  # type: ignore[union-attr]
            self.stream.flush()


def configure_logging(level: int = logging.INFO) -> None:
    """Makes every log record of the process a JSON line on standard error.

    Lines are buffered and written every :data:`LOG_FLUSH_SECONDS` (errors at once), so
    the event loop makes no system call per line; :class:`RpcLog` writes into the same
    buffer.
    """
    global _log_stream
    stream = io.TextIOWrapper(open(os.dup(2), "wb", buffering=64 * 1024), encoding="utf-8")  # noqa: SIM115
    _log_stream = stream
    handler = _BufferedHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)

    def flush_forever() -> None:
        while True:
            time.sleep(LOG_FLUSH_SECONDS)
            handler.force_flush()

    threading.Thread(target=flush_forever, name="log-flush", daemon=True).start()
    atexit.register(handler.force_flush)
