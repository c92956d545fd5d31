"""Runs a command with capped memory and CPU time: ``python limited.py MEMORY_BYTES CPU_SECONDS -- ARGV...``.

A checker of tenant-submitted code (ruff, bandit) runs through this script, in
its own process: the limits are set here, after the fork, and the checker then
replaces this process (``execv``), so the service never forks with a
``preexec_fn`` (unsafe beside gRPC's threads). It imports only the standard
library, and runs with ``python -I`` (no user site, no environment paths).
"""

import os
import resource
import sys

#: How much lower the checker's CPU priority is than the service's (nice(2) increment),
#: as for the kit's sandbox workers.
NICENESS = 10


def main() -> None:
    """Sets ``RLIMIT_AS`` and ``RLIMIT_CPU`` from the arguments and executes the command."""
    memory, cpu, separator, *argv = sys.argv[1:]
    if separator != "--" or not argv:
        raise SystemExit("usage: limited.py MEMORY_BYTES CPU_SECONDS -- ARGV...")
    resource.setrlimit(resource.RLIMIT_AS, (int(memory), int(memory)))
    resource.setrlimit(resource.RLIMIT_CPU, (int(cpu), int(cpu)))
    os.nice(NICENESS)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
