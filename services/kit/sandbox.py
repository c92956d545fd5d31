"""Tenant-written logic that may run long, run in worker processes with a deadline and a memory cap.

Some tenant logic cannot be bounded before it runs (a template's loops over its
input, for one): it runs here, in a separate process, so it never holds the
service's event loop, and a run that passes its deadline is stopped by killing
its worker (a thread cannot be stopped), which is then replaced. Each worker's
address space is capped (``RLIMIT_AS``), so a run that allocates without end
fails with ``MemoryError`` instead of taking the machine.

Workers are started with the ``spawn`` method: a fresh interpreter, never a
``fork()`` of a process running gRPC threads (which can abort the child).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import resource
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class SandboxTimeout(Exception):
    """The run took longer than its deadline and was stopped."""


class SandboxFailed(Exception):
    """The worker died during the run (killed from outside, or out of memory before it could answer)."""


def _serve(connection: Connection, memory_bytes: int) -> None:
    """The worker's loop: run each function sent, send back its result or the exception it raised."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
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
    def __init__(self, memory_bytes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process: BaseProcess = context.Process(target=_serve, args=(child, memory_bytes), daemon=True)
        self.process.start()
        child.close()

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
    """A few worker processes that run module-level functions with a deadline.

    Args:
        workers: How many runs may go on at once.
        memory_bytes: Address space of each worker.
    """

    def __init__(self, workers: int = 1, memory_bytes: int = 512 * 1024 * 1024) -> None:
        self._memory = memory_bytes
        self._size = workers
        self._idle: asyncio.Queue[_Worker] | None = None

    async def _workers(self) -> asyncio.Queue[_Worker]:
        if self._idle is None:
            self._idle = asyncio.Queue()
            for _ in range(self._size):
                self._idle.put_nowait(await asyncio.to_thread(_Worker, self._memory))
        return self._idle

    async def run(self, function: Callable[..., T], *args: Any, timeout: float) -> T:
        """Runs ``function(*args)`` in a worker and returns its result.

        Args:
            function: A module-level function (it is sent to the worker by name).
            *args: Its arguments; they and the result must pickle.
            timeout: Seconds the run may take, waiting for a free worker excluded.

        Raises:
            SandboxTimeout: The run passed ``timeout``; its worker was replaced.
            SandboxFailed: The worker died; it was replaced.
            Exception: What ``function`` raised.
        """
        idle = await self._workers()
        worker = await idle.get()
        try:
            ok, value = await asyncio.to_thread(worker.call, function, args, timeout)
        except SandboxTimeout:
            log.warning("%s passed its %.1f s deadline; its worker is replaced", function.__name__, timeout)
            await asyncio.to_thread(worker.kill)
            worker = await asyncio.to_thread(_Worker, self._memory)
            raise
        except (EOFError, OSError):
            await asyncio.to_thread(worker.kill)
            worker = await asyncio.to_thread(_Worker, self._memory)
            raise SandboxFailed(f"the worker running {function.__name__} died") from None
        finally:
            idle.put_nowait(worker)
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    async def close(self) -> None:
        """Stops the workers."""
        if self._idle is None:
            return
        while not self._idle.empty():
            await asyncio.to_thread(self._idle.get_nowait().kill)
