"""What a process's standard input is (terminal, socket, pipe, file, null), read at exec.

The kernel programs may not read ``task->files`` (no struct offsets: see ENVIRONMENT), so user
space reads the ``/proc/<pid>/fd/0`` link once per exec. It tells an interactive terminal
(``kubectl exec -it``) from a shell wired to a network socket (a reverse shell), the two
questions SOC rules ask of a shell in a container. Best effort: a process already gone, or one
whose fd 0 is closed, yields "".
"""

from __future__ import annotations

import os

KINDS = ("tty", "socket", "pipe", "null", "file", "other")


def classify(link: str) -> str:
    """Kind of an fd from its /proc link text (pure)."""
    if link.startswith(("/dev/pts/", "/dev/tty", "/dev/console")):
        return "tty"
    if link.startswith("socket:["):
        return "socket"
    if link.startswith("pipe:["):
        return "pipe"
    if link == "/dev/null":
        return "null"
    if link.startswith("/"):
        return "file"
    return "other"  # anon_inode:..., memfd, etc.


def stdin_kind(pid: int, proc: str = "/proc") -> str:
    try:
        return classify(os.readlink(f"{proc}/{pid}/fd/0"))
    except OSError:
        return ""
