"""What every benchmark module shares: cores, pinning, CPU accounting, medians, the table.

The machine is split in two: the process being measured runs alone on
:data:`MEASURED_CORE`; the load generator, Envoy, PostgreSQL's backends serving
the benchmark and every other process of the benchmark run on :data:`OTHER_CORE`.
A figure is then a property of one core's worth of the measured service, and a
ratio against a baseline measured the same way in the same run holds on a
noisy machine.

CPU shares are read from ``/proc`` (Linux ``proc(5)``): a process's ``utime +
stime`` over a window, divided by the window's length, is the share of one core
it used (1.0 = a whole core).
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

MEASURED_CORE = 0
OTHER_CORE = 1
_TICKS = os.sysconf("SC_CLK_TCK")


def pin(pid: int, core: int) -> None:
    """Pins every thread of process ``pid`` to ``core``, as ``taskset -a -p -c CORE PID`` does.

    Threads created later inherit the affinity of the thread that creates them,
    so the whole process stays on ``core``. A thread that exits meanwhile is skipped.

    Raises:
        OSError: No such process, or no permission to change it.
    """
    tasks = [int(task) for task in os.listdir(f"/proc/{pid}/task")]
    for task in tasks:
        try:
            os.sched_setaffinity(task, {core})
        except ProcessLookupError:
            pass


def pinned(argv: Sequence[str], core: int) -> list[str]:
    """Returns ``argv`` prefixed so that the new process starts on ``core`` (``taskset -c``)."""
    return ["taskset", "-c", str(core), *argv]


def process_cpu_seconds(pid: int) -> float:
    """Returns the CPU time (user + system, all threads) process ``pid`` has used, in seconds.

    Raises:
        OSError: The process does not exist (any more).
    """
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the parenthesised command name, which may contain spaces (proc(5)).
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def core_busy_seconds() -> dict[int, float]:
    """Returns each core's non-idle time since boot in seconds (``/proc/stat``)."""
    busy = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(v) for v in values]
            idle = ticks[3] + ticks[4]  # idle + iowait
            busy[int(name[3:])] = (sum(ticks[:8]) - idle) / _TICKS
    return busy


def local_ports_to(pid: int, remote_port: int) -> set[int]:
    """Returns the local TCP ports of process ``pid``'s connections to ``remote_port``.

    Reads the process's socket inodes (``/proc/PID/fd``) and the kernel's TCP tables
    (``/proc/net/tcp``, ``tcp6``); a process that exited has none.
    """
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == remote_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


@dataclass
class CpuWindow:
    """CPU use of some processes and of every core over a window of wall time.

    Call :meth:`close` at the end of the window; :attr:`shares` then maps each
    watched PID to the share of one core it used, and :attr:`core_busy` each core
    to the share of it that was busy with anything (this machine's other users too).

    Args:
        pids: Processes to watch; one that exits before the window closes counts as 0.
    """

    pids: Sequence[int]
    began: float = field(default_factory=time.perf_counter, init=False)
    _start: dict[int, float] = field(default_factory=dict, init=False)
    _cores: dict[int, float] = field(default_factory=core_busy_seconds, init=False)
    shares: dict[int, float] = field(default_factory=dict, init=False)
    core_busy: dict[int, float] = field(default_factory=dict, init=False)
    seconds: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        for pid in self.pids:
            try:
                self._start[pid] = process_cpu_seconds(pid)
            except OSError:
                pass
        self.began = time.perf_counter()

    def close(self) -> CpuWindow:
        """Ends the window and fills :attr:`shares`, :attr:`core_busy` and :attr:`seconds`."""
        self.seconds = time.perf_counter() - self.began
        for pid, start in self._start.items():
            try:
                self.shares[pid] = (process_cpu_seconds(pid) - start) / self.seconds
            except OSError:
                self.shares[pid] = 0.0
        end = core_busy_seconds()
        self.core_busy = {core: (end[core] - self._cores[core]) / self.seconds for core in end}
        return self


@dataclass(frozen=True)
class Sample:
    """One run of a throughput figure.

    Attributes:
        rate: Completed operations per second (calls, requests or events).
        target_cpu: Share of a core the measured process used (1.0 = all of core 0).
        loadgen_cpu: Share of a core the load generator used (of core 1).
        other_core_busy: Share of core 1 busy with anything during the run.
        measured_core_busy: Share of core 0 busy with anything during the run; above
            ``target_cpu``, something else ran beside the measured process.
        p50_ms: Median latency of one call, in milliseconds.
        p99_ms: 99th percentile latency of one call, in milliseconds.
    """

    rate: float
    target_cpu: float
    loadgen_cpu: float
    other_core_busy: float
    measured_core_busy: float
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")


def median_sample(samples: Sequence[Sample]) -> Sample:
    """Returns the sample of median rate (for an even count, the lower middle one).

    The CPU shares and latencies shown with a figure are those of that same run, so
    they describe the run the figure's value comes from.

    Raises:
        ValueError: ``samples`` is empty.
    """
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples, key=lambda sample: sample.rate)
    return ordered[(len(ordered) - 1) // 2]


def percentile(values: Sequence[float], fraction: float) -> float:
    """Returns the nearest-rank percentile of ``values`` (``fraction`` 0.99 for p99).

    Raises:
        ValueError: ``values`` is empty.
    """
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))  # ceil(n * fraction), at least 1
    return ordered[int(rank) - 1]


@dataclass(frozen=True)
class Goal:
    """A target a figure's ratio or value must reach.

    Attributes:
        text: How the goal reads in the table, e.g. ``>= 0.45``.
        min_ratio: The ratio must be at least this, when set.
        max_ratio: The ratio must be at most this, when set (a cost against a baseline).
        min_value: The value must be at least this, when set.
        max_value: The value must be below this, when set.
    """

    text: str
    min_ratio: float | None = None
    max_ratio: float | None = None
    min_value: float | None = None
    max_value: float | None = None

    def met(self, value: float, ratio: float | None) -> bool | None:
        """Returns whether ``value`` (and ``ratio``, where the goal has one) reach the goal.

        Returns:
            None for a goal without a threshold (the baseline's ``(baseline)``).
        """
        thresholds = (self.min_ratio, self.max_ratio, self.min_value, self.max_value)
        if all(threshold is None for threshold in thresholds):
            return None
        if self.min_ratio is not None and (ratio is None or ratio < self.min_ratio):
            return False
        if self.max_ratio is not None and (ratio is None or ratio > self.max_ratio):
            return False
        if self.min_value is not None and value < self.min_value:
            return False
        return not (self.max_value is not None and value >= self.max_value)


@dataclass(frozen=True)
class Row:
    """One line of the ``make bench`` table.

    Attributes:
        figure: What was measured, e.g. ``GetAgent direct gRPC ÷ echo, SQLite``.
        value: The figure's value in ``unit``.
        unit: ``/s`` (calls or requests per second), ``ev/s`` (events per second), ``ms``, ``µs``.
        baseline: The baseline's value in the same unit, for ratio figures.
        goal: The figure's target; None for a context row (no goal: what the others rest on).
        sample: The median run, for the CPU columns; None where they do not apply.
        shown: The value as printed, when it is more than a number (``p50 3 / p99 9``).
        paired: The ratio of the figure's and the baseline's runs of one round, median over
            the rounds (:func:`paired_ratio`); when set, it is the row's ratio.
    """

    figure: str
    value: float
    unit: str
    baseline: float | None = None
    goal: Goal | None = None
    sample: Sample | None = None
    shown: str | None = None
    paired: float | None = None

    @property
    def ratio(self) -> float | None:
        """The paired ratio when set, else ``value / baseline``; None without a baseline."""
        if self.paired is not None:
            return self.paired
        return self.value / self.baseline if self.baseline else None

    @property
    def met(self) -> bool | None:
        """Whether the goal is reached; None without a goal."""
        return self.goal.met(self.value, self.ratio) if self.goal else None


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def share_text(value: float | None) -> str:
    """Returns a share of a core as a percentage, ``-`` for none (or NaN)."""
    return "-" if value is None or math.isnan(value) else f"{value * 100:.0f}%"


def _cells(row: Row) -> tuple[str, ...]:
    sample = row.sample
    met = row.met
    return (
        row.figure,
        row.shown or f"{_number(row.value)} {row.unit}",
        "-" if row.baseline is None else f"{_number(row.baseline)} {row.unit}",
        "-" if row.ratio is None else f"{row.ratio:.2f}",
        row.goal.text if row.goal else "-",
        "-" if met is None else ("yes" if met else "NO"),
        share_text(sample.target_cpu if sample else None),
        share_text(sample.measured_core_busy if sample else None),
        share_text(sample.loadgen_cpu if sample else None),
        share_text(sample.other_core_busy if sample else None),
    )


def render_table(sections: Sequence[tuple[str, Sequence[Row]]]) -> str:
    """Returns titled sections of rows as one fixed-width text table under one header line.

    Columns: figure, value (with unit), baseline, ratio, goal, met, then the CPU
    shares of the median run: the measured process (``target``, alone on core 0),
    all of core 0 (``core 0``: more than ``target`` means something else ran there),
    the load generator (on core 1) and all of core 1 (``core 1``).
    """
    header = ("figure", "value", "baseline", "ratio", "goal", "met", "target", "core 0", "loadgen", "core 1")
    lines = {id(row): _cells(row) for _title, rows in sections for row in rows}
    widths = [max(len(cells[i]) for cells in [header, *lines.values()]) for i in range(len(header))]

    def fmt(cells: Sequence[str]) -> str:
        padded = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([cells[0].ljust(widths[0]), *padded])

    out = [fmt(header), "=" * len(fmt(header))]
    for title, rows in sections:
        out.append(f"-- {title} ".ljust(len(fmt(header)), "-"))
        out.extend(fmt(lines[id(row)]) for row in rows)
    return "\n".join(out)


#: A measured process using less of its core than this was limited by something else.
SATURATED = 0.90


def limit_checks(rows: Iterable[Row]) -> list[str]:
    """Returns what limited each figure whose measured process did not use its whole core.

    A throughput figure describes the measured process only when that process is
    the limit: it used at least :data:`SATURATED` of core 0 while the load generator
    used less than that of core 1. Also reported: other processes taking more than
    5% of core 0 beside the measured one.

    Returns:
        One line per finding; empty when every figure was limited by its measured process.
    """
    found = []
    for row in rows:
        sample = row.sample
        if sample is None or math.isnan(sample.target_cpu):
            continue
        if sample.target_cpu < SATURATED:
            if not math.isnan(sample.loadgen_cpu) and sample.loadgen_cpu >= SATURATED:
                cause = "the load generator"
            elif sample.other_core_busy >= 0.95:
                cause = "core 1 (load generator, Envoy, PostgreSQL)"
            else:
                cause = "waiting, not CPU (round trips, locks, I/O)"
            found.append(
                f"{row.figure}: the measured process used {share_text(sample.target_cpu)} of core 0; "
                f"limited by {cause}"
            )
        elif not math.isnan(sample.loadgen_cpu) and sample.loadgen_cpu >= SATURATED:
            found.append(f"{row.figure}: the load generator used {share_text(sample.loadgen_cpu)} of core 1")
        if sample.measured_core_busy - sample.target_cpu > 0.05:
            found.append(
                f"{row.figure}: other processes took "
                f"{share_text(sample.measured_core_busy - sample.target_cpu)} of core 0"
            )
    return found


@dataclass
class Throughput:
    """A figure measured by repeated runs, interleaved with the other figures' runs.

    The runner calls :attr:`measure` once per round, every figure in turn, so a
    slow moment of the machine touches every figure alike.

    Attributes:
        name: What is measured, for progress lines.
        measure: Does one run and returns its sample.
        samples: The runs so far.
    """

    name: str
    measure: Callable[[], Sample]
    samples: list[Sample] = field(default_factory=list)

    @property
    def median(self) -> Sample:
        """The run of median rate (see :func:`median_sample`)."""
        return median_sample(self.samples)


def paired_ratio(figure: Throughput, baseline: Throughput) -> float:
    """Returns the median over rounds of ``figure``'s rate ÷ ``baseline``'s rate in that round.

    Runs of one round are seconds apart, so a slow phase of the machine (a checkpoint,
    another process's burst) that spans a round touches both; the ratio of the medians
    can pair a fast run of one with a slow run of the other.

    Raises:
        ValueError: The two have different numbers of runs, or none.
    """
    if len(figure.samples) != len(baseline.samples) or not figure.samples:
        raise ValueError(f"{figure.name} and {baseline.name} need the same rounds")
    return median([f.rate / b.rate for f, b in zip(figure.samples, baseline.samples, strict=True)])


class Group(Protocol):
    """The figures of one benchmark module.

    The runner first measures every group's :meth:`throughputs` in interleaved
    rounds, then asks each group for its :meth:`rows` (a group may measure
    figures of its own there, such as latencies).
    """

    def throughputs(self) -> Sequence[Throughput]:
        """Returns the figures to measure in the interleaved rounds."""
        ...

    def rows(self) -> Sequence[Row]:
        """Returns the group's table rows, goal rows and context rows alike."""
        ...


def machine_facts() -> Mapping[str, str]:
    """Returns the CPU model, cores, kernel, Python and load average, for printing under the table."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": " ".join(f"{load:.2f}" for load in os.getloadavg()),
    }


def median(values: Sequence[float]) -> float:
    """Returns the median of ``values``.

    Raises:
        statistics.StatisticsError: ``values`` is empty.
    """
    return statistics.median(values)
