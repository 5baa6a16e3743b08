"""Find processes by a variable in their environment (Linux /proc). No ROS here.

A variable set in a process's environment is inherited by everything it starts, also by
processes in sessions of their own and by orphans re-parented to init: the one mark that a
test or a benchmark can use to end every process it started, however they ended up.
"""
from __future__ import annotations

import os


def tagged_processes(var: str, value: str) -> list[tuple[int, int, bytes]]:
    """(pid, parent pid, command line) of every other process whose environment holds
    var=value."""
    needle = f'{var}={value}'.encode()
    found = []
    for entry in os.scandir('/proc'):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f'/proc/{entry.name}/environ', 'rb') as f:
                if needle not in f.read().split(b'\0'):
                    continue
            with open(f'/proc/{entry.name}/cmdline', 'rb') as f:
                cmdline = f.read()
            with open(f'/proc/{entry.name}/stat') as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue   # gone, or a kernel thread
        found.append((int(entry.name), ppid, cmdline))
    return found
