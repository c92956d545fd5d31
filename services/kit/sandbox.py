"""Tenant-written logic that may run long, run in worker processes with a deadline and a memory cap.

Some tenant logic cannot be bounded before it runs (a template's loops over its
input, for one): it runs here, in a separate process, so it never holds the
service's event loop, and a run that passes its deadline is stopped by killing
its worker (a thread cannot be stopped), which is then replaced. Each worker's
address space is capped (``RLIMIT_AS``), so a run that allocates without end
fails with ``MemoryError`` instead of taking the machine, and runs at a lower
CPU priority (:data:`NICENESS`), so a busy worker yields the core to the
services' own work.

Workers are shared fairly: when every worker is busy, the next free one goes
to the next owner (a tenant) in turn, not to the next call in line, so one
tenant queueing many slow runs delays another tenant's run by at most one run
per busy worker (each bounded by its deadline), never by its whole queue.

Workers are started with the ``spawn`` method: a fresh interpreter, never a
``fork()`` of a process running gRPC threads (which can abort the child). A
worker counts as started once it has imported the modules it is told to
preload and said so, so a run's deadline measures the run, never an
interpreter starting on a loaded machine.
"""

from __future__ import annotations

import asyncio
import collections
import importlib
import logging
import multiprocessing
import os
import resource
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
#: How much lower the workers' CPU priority is than the service's (nice(2) increment).
NICENESS = 10
#: Seconds a new worker may take to start and import its preloaded modules.
START_SECONDS = 60.0
_READY = "ready"


class SandboxTimeout(Exception):
    """The run took longer than its deadline and was stopped."""


class SandboxFailed(Exception):
    """The worker died during the run (killed from outside, or out of memory before it could answer)."""


def _serve(connection: Connection, memory_bytes: int, preload: tuple[str, ...]) -> None:
    """The worker's loop: run each function sent, send back its result or the exception it raised."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    for module in preload:
        importlib.import_module(module)
    connection.send(_READY)
    os.nice(NICENESS)  # tenant logic yields the CPU to the services
    while True:
        try:
            function, args = connection.recv()
        except EOFError:
            return
        try:
            connection.send((True, function(*args)))
        except BaseException as error:  # handed back and raised in the service
            connection.send((False, error))


class _Worker:
    def __init__(self, memory_bytes: int, preload: tuple[str, ...]) -> None:
        """Starts a worker and waits until it is ready (blocking; call it in a thread).

        Raises:
            SandboxFailed: It did not start within :data:`START_SECONDS`.
        """
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process: BaseProcess = context.Process(
            target=_serve, args=(child, memory_bytes, preload), daemon=True
        )
        self.process.start()
        child.close()
        try:
            ready = self.connection.poll(START_SECONDS) and self.connection.recv() == _READY
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.kill()
            raise SandboxFailed(f"a sandbox worker did not start within {START_SECONDS:g} s")

    def call(self, function: Callable[..., Any], args: tuple[Any, ...], timeout: float) -> tuple[bool, Any]:
        self.connection.send((function, args))
        if not self.connection.poll(timeout):
            raise SandboxTimeout
        outcome: tuple[bool, Any] = self.connection.recv()
        return outcome

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.connection.close()


class Sandbox:
    """A few worker processes that run module-level functions with a deadline, shared fairly by owners.

    Args:
        workers: How many runs may go on at once.
        memory_bytes: Address space of each worker.
        preload: Modules each worker imports before it counts as started (those of the
            functions it will run), so that no run's deadline pays for an import.
    """

    def __init__(
        self, workers: int = 2, memory_bytes: int = 512 * 1024 * 1024, preload: Iterable[str] = ()
    ) -> None:
        self._memory = memory_bytes
        self._preload = tuple(preload)
        self._size = workers
        self._free: list[_Worker] | None = None
        self._started = asyncio.Lock()
        # Owner -> its calls waiting for a worker; the dict's order is the turn order.
        self._waiting: dict[str, collections.deque[asyncio.Future[_Worker]]] = {}

    def _start(self) -> _Worker:
        return _Worker(self._memory, self._preload)

    async def _acquire(self, owner: str) -> _Worker:
        async with self._started:
            if self._free is None:
                self._free = [await asyncio.to_thread(self._start) for _ in range(self._size)]
        if self._free and not self._waiting:
            return self._free.pop()
        future: asyncio.Future[_Worker] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(owner, collections.deque()).append(future)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # handed a worker as it was cancelled
                self._release(future.result())
            raise

    def _release(self, worker: _Worker) -> None:
        """Hands ``worker`` to the next owner in turn that waits, or frees it."""
        while self._waiting:
            owner = next(iter(self._waiting))
            queue = self._waiting.pop(owner)
            future = queue.popleft()
            if queue:
                self._waiting[owner] = queue  # its next call waits for its next turn
            if not future.done():  # skips calls cancelled while waiting
                future.set_result(worker)
                return
        assert self._free is not None
        self._free.append(worker)

    async def run(self, function: Callable[..., T], *args: Any, timeout: float, owner: str = "") -> T:
        """Runs ``function(*args)`` in a worker and returns its result.

        Args:
            function: A module-level function (it is sent to the worker by name).
            *args: Its arguments; they and the result must pickle.
            timeout: Seconds the run may take, waiting for a free worker excluded.
            owner: Whose run it is (a tenant); owners take turns at busy workers.

        Raises:
            SandboxTimeout: The run passed ``timeout``; its worker was replaced.
            SandboxFailed: The worker died; it was replaced.
            Exception: What ``function`` raised.
        """
        worker = await self._acquire(owner)
        try:
            ok, value = await asyncio.to_thread(worker.call, function, args, timeout)
        except SandboxTimeout:
            log.warning("%s passed its %.1f s deadline; its worker is replaced", function.__name__, timeout)
            await asyncio.to_thread(worker.kill)
            worker = await asyncio.to_thread(self._start)
            raise
        except (EOFError, OSError):
            await asyncio.to_thread(worker.kill)
            worker = await asyncio.to_thread(self._start)
            raise SandboxFailed(f"the worker running {function.__name__} died") from None
        finally:
            self._release(worker)
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    async def close(self) -> None:
        """Stops the free workers; a busy one (a daemon process) ends with the service."""
        for worker in self._free or ():
            await asyncio.to_thread(worker.kill)
        self._free = []
