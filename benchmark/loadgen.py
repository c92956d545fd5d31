"""The load generators: gRPC unary calls and HTTP requests with a fixed number in flight.

gRPC: a Python process of its own (:func:`run_plan`); HTTP/1.1: wrk (:func:`run_wrk`),
whose C event loop leaves Envoy, with which it shares a core, the most room.

``python -m benchmark.loadgen`` reads a :class:`Plan` as JSON on stdin and writes
a :class:`Result` as JSON on stdout. Requests are pre-serialised bytes and
responses stay bytes (no protobuf work in the generator), and one HTTP/2
connection carries every call, as a client of the mesh would. Two modes:

* ``request`` set: the same request over and over, ``warmup_seconds`` not
  counted, then calls completed in the next ``seconds`` counted;
* ``requests_file`` set: each request of the file sent at most once (fresh rows
  for ingestion), the first ``warmup_count`` of them not counted; counting ends
  when the file runs out or after ``seconds``, and the rate is counted calls over
  the time from the first counted call to the last counted reply.

The generator reads the CPU use of ``watch_pids``, of itself and of each core
over exactly the counted window (see :class:`benchmark.harness.CpuWindow`), so
a reader can tell whether the service or the generator was the limit.
:func:`run_plan` starts the process and parses its answer.

wrk is the Debian package ``wrk``; ``make bench`` installs it when missing.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc

from benchmark.harness import MEASURED_CORE, OTHER_CORE, CpuWindow, Sample, percentile, pinned


@dataclass
class Plan:
    """What the load generator does.

    Attributes:
        target: ``host:port`` of the server.
        method: Full method path, ``/package.Service/Method``.
        tls: ``ca``, ``cert``, ``key`` file paths and ``server_name`` for mTLS; None for plaintext h2c.
        metadata: Request metadata pairs, e.g. the bearer token.
        concurrency: Calls in flight at every moment.
        request: Hex of the serialised request repeated in the timed mode.
        warmup_seconds: Timed mode: seconds of calls before counting starts.
        seconds: Seconds during which completed calls are counted (each-once mode: at most).
        requests_file: Each-once mode: file of length-prefixed (4 bytes, big-endian) requests.
        warmup_count: Each-once mode: leading requests of the file not counted.
        watch_pids: Processes whose CPU use over the counted window is reported.
        timeout: Deadline of each call in seconds.
    """

    target: str
    method: str
    tls: dict[str, str] | None
    metadata: list[tuple[str, str]] = field(default_factory=list)
    concurrency: int = 64
    request: str | None = None
    warmup_seconds: float = 1.0
    seconds: float = 3.0
    requests_file: str | None = None
    warmup_count: int = 0
    watch_pids: list[int] = field(default_factory=list)
    timeout: float = 30.0


@dataclass
class Result:
    """What one load generator run measured over its counted window.

    Attributes:
        calls: Calls completed and counted.
        errors: Calls that failed, counted or not; any is a broken run.
        first_error: The first failure's code and details.
        seconds: Length of the counted window.
        rate: ``calls / seconds``.
        p50_ms: Median latency of the counted calls.
        p99_ms: 99th percentile latency of the counted calls.
        shares: Watched PID (as a string, JSON keys) to the share of a core it used.
        self_share: Share of a core the load generator used.
        core_busy: Core number (as a string) to the share of it that was busy.
    """

    calls: int
    errors: int
    first_error: str
    seconds: float
    rate: float
    p50_ms: float
    p99_ms: float
    shares: dict[str, float]
    self_share: float
    core_busy: dict[str, float]


def write_requests(path: Path, requests: Sequence[bytes]) -> None:
    """Writes requests in the load generator's file format (4-byte big-endian length, then bytes)."""
    with open(path, "wb") as out:
        for request in requests:
            out.write(struct.pack(">I", len(request)))
            out.write(request)


def _read_requests(path: str) -> list[bytes]:
    data = Path(path).read_bytes()
    requests, offset = [], 0
    while offset < len(data):
        (size,) = struct.unpack_from(">I", data, offset)
        requests.append(data[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return requests


class _Driver:
    """Keeps ``concurrency`` calls in flight: each reply issues the next call from its callback.

    The sync API's futures complete on gRPC's own thread, which costs the generator
    less CPU per call than an asyncio loop (measured: about 130 against 170 us per
    call against the echo), so the generator keeps more headroom.
    """

    def __init__(self, call: grpc.UnaryUnaryMultiCallable, plan: Plan) -> None:
        self._call = call
        self._metadata = tuple(plan.metadata)
        self._timeout = plan.timeout
        self._lock = threading.Lock()
        self._requests: Iterator[bytes] = iter(())
        self._in_flight = 0
        self._idle = threading.Event()
        self.stopping = False
        self.counting = False
        self.latencies: list[float] = []
        self.errors = 0
        self.first_error = ""

    def run(self, requests: Iterator[bytes], concurrency: int) -> None:
        """Starts ``concurrency`` chains of calls over ``requests``; :meth:`wait` waits for them."""
        self._requests = requests
        self.stopping = False
        self._idle.clear()
        with self._lock:
            self._in_flight = concurrency
        for _ in range(concurrency):
            self._issue()

    def wait(self, timeout: float | None = None) -> None:
        """Waits until ``requests`` ran out (or :attr:`stopping` was set) and no call is in flight.

        Args:
            timeout: Give up waiting after this many seconds.
        """
        self._idle.wait(timeout)

    def _issue(self) -> None:
        with self._lock:
            request = None if self.stopping else next(self._requests, None)
            if request is None:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.set()
                return
        future = self._call.future(request, metadata=self._metadata, timeout=self._timeout)
        future.add_done_callback(functools.partial(self._done, time.perf_counter()))

    def _done(self, began: float, future: grpc.Future) -> None:
        error = future.exception()
        if error is not None:
            with self._lock:
                self.errors += 1
                if not self.first_error:
                    self.first_error = f"{error.code().name}: {error.details()}"  # type: ignore[attr-defined]
        elif self.counting:
            self.latencies.append(time.perf_counter() - began)
        self._issue()


def _channel(plan: Plan) -> grpc.Channel:
    # No retries: a failed call is reported, never hidden (and the retry filter costs CPU).
    options: list[tuple[str, str | int]] = [("grpc.enable_retries", 0)]
    if plan.tls is None:
        return grpc.insecure_channel(plan.target, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(plan.tls["ca"]).read_bytes(),
        private_key=Path(plan.tls["key"]).read_bytes(),
        certificate_chain=Path(plan.tls["cert"]).read_bytes(),
    )
    options.append(("grpc.ssl_target_name_override", plan.tls["server_name"]))
    return grpc.secure_channel(plan.target, credentials, options=options)


def run(plan: Plan) -> Result:
    """Runs ``plan`` in this process and returns what it measured."""
    me = os.getpid()
    with _channel(plan) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        driver = _Driver(channel.unary_unary(plan.method, _registered_method=True), plan)
        if plan.request is not None:
            driver.run(itertools.repeat(bytes.fromhex(plan.request)), plan.concurrency)
            time.sleep(plan.warmup_seconds)
            driver.counting = True
            window = CpuWindow([*plan.watch_pids, me])
            time.sleep(plan.seconds)
            window.close()
            driver.counting = False
            driver.stopping = True
            driver.wait()
        else:
            assert plan.requests_file is not None
            requests = _read_requests(plan.requests_file)
            driver.run(iter(requests[: plan.warmup_count]), plan.concurrency)
            driver.wait()
            driver.counting = True
            window = CpuWindow([*plan.watch_pids, me])
            driver.run(iter(requests[plan.warmup_count :]), plan.concurrency)
            driver.wait(plan.seconds)
            driver.stopping = True
            driver.wait()
            window.close()
    latencies = driver.latencies or [float("nan")]
    return Result(
        calls=len(driver.latencies),
        errors=driver.errors,
        first_error=driver.first_error,
        seconds=window.seconds,
        rate=len(driver.latencies) / window.seconds,
        p50_ms=percentile(latencies, 0.50) * 1e3,
        p99_ms=percentile(latencies, 0.99) * 1e3,
        shares={str(pid): share for pid, share in window.shares.items() if pid != me},
        self_share=window.shares[me],
        core_busy={str(core): busy for core, busy in window.core_busy.items()},
    )


def run_plan(plan: Plan, core: int = OTHER_CORE) -> Result:
    """Runs ``plan`` in a new load generator process pinned to ``core`` and returns its result.

    Raises:
        RuntimeError: The process failed, or some call failed (a run with errors measures nothing).
    """
    answer = subprocess.run(
        pinned([sys.executable, "-m", "benchmark.loadgen"], core),
        input=json.dumps(asdict(plan)).encode(),
        capture_output=True,
        check=False,
    )
    if answer.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{answer.stderr.decode(errors='replace')[-3000:]}")
    result = Result(**json.loads(answer.stdout))
    if result.errors:
        raise RuntimeError(f"{result.errors} calls to {plan.method} failed, first: {result.first_error}")
    return result


def sample_of(result: Result, target_pid: int) -> Sample:
    """Returns a load generator result as a :class:`~benchmark.harness.Sample` of ``target_pid``."""
    return Sample(
        rate=result.rate,
        target_cpu=result.shares.get(str(target_pid), float("nan")),
        loadgen_cpu=result.self_share,
        other_core_busy=result.core_busy[str(OTHER_CORE)],
        measured_core_busy=result.core_busy[str(MEASURED_CORE)],
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
    )


# wrk calls done() once at the end (wrk's SCRIPTING doc); one JSON line after its own report.
_WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "status_errors": %d, "socket_errors": %d,'
    .. ' "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_path() -> str:
    """Returns the path of the wrk binary.

    Raises:
        RuntimeError: wrk is not installed (``apt-get install wrk``; ``make bench`` does it).
    """
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not installed: apt-get install wrk (make bench installs it when missing)")
    return found


def run_wrk(
    url: str,
    headers: dict[str, str],
    *,
    connections: int,
    seconds: float,
    warmup_seconds: float,
    target_pid: int | None,
    refused_ok: bool = False,
    core: int = OTHER_CORE,
) -> Sample:
    """Runs wrk (one thread, ``connections`` keep-alive HTTP/1.1 connections) against ``url`` on ``core``.

    A first run of ``warmup_seconds`` is not counted. CPU shares cover the counted run:
    wrk's from the kernel's accounting of the finished child (``getrusage``), the target's
    and the cores' from ``/proc``.

    Args:
        url: The URL requested over and over (GET).
        headers: Request headers, e.g. the bearer token.
        connections: Requests in flight (one per connection).
        seconds: Length of the counted run; wrk takes whole seconds, at least 1.
        warmup_seconds: Length of the uncounted first run.
        target_pid: The process measured, or None.
        refused_ok: Responses of status 400 or more count (a ceiling run against a refusal).
        core: Where wrk runs.

    Raises:
        RuntimeError: wrk failed, a socket error happened, or (unless ``refused_ok``) a
            response had status 400 or more.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(_WRK_SCRIPT)
        script.flush()

        def wrk(duration: float) -> dict[str, int]:
            argv = [wrk_path(), "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "-s", script.name]
            for key, value in headers.items():
                argv += ["-H", f"{key}: {value}"]
            done = subprocess.run(pinned([*argv, url], core), capture_output=True, text=True, check=False)
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            if done.returncode != 0 or not lines:
                raise RuntimeError(
                    f"wrk failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}"
                )
            report: dict[str, int] = json.loads(lines[-1])
            if report["socket_errors"] or (report["status_errors"] and not refused_ok):
                raise RuntimeError(f"wrk saw failed requests against {url}: {done.stdout[-2000:]}")
            return report

        wrk(warmup_seconds)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        window = CpuWindow([] if target_pid is None else [target_pid])
        report = wrk(seconds)
        window.close()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Sample(
        rate=report["requests"] / (report["duration_us"] / 1e6),
        target_cpu=float("nan") if target_pid is None else window.shares[target_pid],
        loadgen_cpu=wrk_cpu / window.seconds,
        other_core_busy=window.core_busy[core],
        measured_core_busy=window.core_busy[MEASURED_CORE],
        p50_ms=report["p50_us"] / 1e3,
        p99_ms=report["p99_us"] / 1e3,
    )


def main() -> None:
    """Reads a plan on stdin, runs it, writes the result on stdout."""
    plan = Plan(**json.loads(sys.stdin.read()))
    plan.metadata = [(key, value) for key, value in plan.metadata]
    print(json.dumps(asdict(run(plan))))


if __name__ == "__main__":
    main()
