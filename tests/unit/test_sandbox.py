"""The sandbox: tenant logic in worker processes, stopped at its deadline, shared fairly by tenants."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from services.kit.sandbox import Sandbox, SandboxTimeout


def slow(seconds: float, label: str) -> str:
    time.sleep(seconds)
    return label


def spin() -> None:
    while True:
        pass


def hoard() -> int:
    return len(bytearray(1 << 30))  # more than the worker's address space


def fail() -> None:
    raise ValueError("the tenant's logic raised this")


async def test_a_run_past_its_deadline_is_stopped_and_the_sandbox_goes_on() -> None:
    sandbox = Sandbox(workers=1, memory_bytes=256 * 1024 * 1024)
    try:
        with pytest.raises(SandboxTimeout):
            await sandbox.run(spin, timeout=0.3)
        assert await sandbox.run(slow, 0, "after", timeout=5) == "after"
    finally:
        await sandbox.close()


async def test_memory_and_errors_stay_in_the_run() -> None:
    sandbox = Sandbox(workers=1, memory_bytes=256 * 1024 * 1024)
    try:
        with pytest.raises(MemoryError):
            await sandbox.run(hoard, timeout=5)
        with pytest.raises(ValueError, match="the tenant's logic raised this"):
            await sandbox.run(fail, timeout=5)
        assert await sandbox.run(slow, 0, "still serving", timeout=5) == "still serving"
    finally:
        await sandbox.close()


async def test_owners_take_turns_at_a_busy_worker() -> None:
    """B's one run waits for one of A's runs, not for A's whole queue."""
    sandbox = Sandbox(workers=1, memory_bytes=256 * 1024 * 1024)
    finished: list[str] = []

    async def run(owner: str, label: str) -> None:
        finished.append(await sandbox.run(slow, 0.2, label, timeout=5, owner=owner))

    try:
        await sandbox.run(slow, 0, "warm", timeout=5)  # the worker is started
        a_runs = [asyncio.create_task(run("a", f"a{i}")) for i in range(4)]
        await asyncio.sleep(0.05)  # a0 holds the worker, a1-a3 wait
        b_run = asyncio.create_task(run("b", "b0"))
        await asyncio.gather(*a_runs, b_run)
    finally:
        await sandbox.close()
    assert finished == ["a0", "a1", "b0", "a2", "a3"]


async def test_a_deadline_does_not_pay_for_the_worker_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module that takes longer to import than the run's deadline (as a big import on a
    # loaded machine does): preloaded, the worker has imported it before the clock starts.
    module = tmp_path / "slow_to_import.py"
    module.write_text("import time\ntime.sleep(1.0)\n\ndef answer() -> str:\n    return 'ready'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import slow_to_import  # type: ignore[import-not-found]

    sandbox = Sandbox(workers=1, memory_bytes=256 * 1024 * 1024, preload=["slow_to_import"])
    try:
        assert await sandbox.run(slow_to_import.answer, timeout=0.5) == "ready"
    finally:
        await sandbox.close()
