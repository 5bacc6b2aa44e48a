"""A real dash as /bin/sh in a busybox rootfs (Debian's standalone busybox shell would run
most commands without an execve, hiding exactly the process activity a baseline learns).

Copies /bin/dash and every library ``ldd`` lists to the same paths in the rootfs. (h13core
adds an equivalent helper to tests/containers.py; fold this one into it when both land.)
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path


def install_dash(rootfs: Path) -> None:
    out = subprocess.run(["ldd", "/bin/dash"], capture_output=True, text=True, check=True).stdout
    libs = re.findall(r"(/\S+) \(0x", out)
    for src in ["/bin/dash", *libs]:
        dest = rootfs / src.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(src).resolve(), dest)
    sh = rootfs / "bin/sh"
    sh.unlink(missing_ok=True)
    sh.symlink_to("dash")
