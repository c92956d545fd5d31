"""Runs a command that dies with the process that started it.

``python -m services.cli.die_with_parent <parent pid> <command> [args...]`` asks
Linux to send SIGTERM when the parent exits (``prctl(PR_SET_PDEATHSIG)``,
which ``execve`` keeps), then replaces itself with the command. Doing this in
the child, after it is spawned, keeps the spawn a plain ``posix_spawn``/
``vfork``: a ``fork()`` with ``preexec_fn`` in a process running gRPC threads
would run gRPC's fork handlers in the child, which can abort it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    """Sets the parent-death signal and execs ``argv[1:]``; exits if the parent is already gone."""
    parent, command = int(argv[0]), argv[1:]
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the signal was armed
        sys.exit(1)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
