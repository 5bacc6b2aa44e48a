"""A real rsyslogd on loopback, started by the test with its own config and work dir; it
writes each received message's MSG part, one per line, to a file the test reads."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from conftest import require


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Rsyslog:
    def __init__(self, workdir: Path, tcp_port: int = 0, udp_port: int = 0, tls: tuple[str, str, str] | None = None,
                 fast: bool = False) -> None:
        """``fast`` (benchmarks): plain TCP through imptcp, and the file written by its own
        thread (an action queue, 4,096 messages a batch), so reading and writing overlap.
        (Asynchronous file writing was tried too: no cheaper per message here, and its
        flush interval delays the last lines by up to a second.)"""
        require(shutil.which("rsyslogd") is not None, "rsyslogd (apt rsyslog)")
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.out = self.dir / "received.log"
        self.tcp_port = tcp_port or free_port()
        self.udp_port = udp_port or free_port(socket.SOCK_DGRAM)
        lines = [f'global(workDirectory="{self.dir}" maxMessageSize="64k" parser.escapeControlCharactersOnReceive="off")']
        if tls:
            ca, cert, key = tls
            lines.append(f'global(DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="{ca}" '
                         f'DefaultNetstreamDriverCertFile="{cert}" DefaultNetstreamDriverKeyFile="{key}")')
            lines.append('module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")')
        else:
            lines.append('module(load="imptcp")' if fast else 'module(load="imtcp")')
        tcp = "imptcp" if fast and not tls else "imtcp"
        write = 'flushOnTXEnd="on" asyncWriting="off"'
        if fast:
            write += ' queue.type="LinkedList" queue.size="200000" queue.dequeueBatchSize="4096"'
        lines += [
            'module(load="imudp")',
            f'input(type="{tcp}" port="{self.tcp_port}" address="127.0.0.1" ruleset="r")',
            f'input(type="imudp" port="{self.udp_port}" address="127.0.0.1" ruleset="r")',
            'template(name="raw" type="string" string="%msg%\\n")',
            f'ruleset(name="r") {{ action(type="omfile" file="{self.out}" template="raw" {write}) }}',
        ]
        self.conf = self.dir / "rsyslog.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["rsyslogd", "-n", "-f", str(self.conf), "-i", str(self.dir / "pid")],
                                     stdout=subprocess.DEVNULL, stderr=open(self.dir / "stderr", "ab"))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.tcp_port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"rsyslogd did not listen: {(self.dir / 'stderr').read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)
        self.proc = None

    def lines(self) -> list[str]:
        try:
            return [ln.lstrip(" ") for ln in self.out.read_text(errors="replace").split("\n") if ln] if self.out.exists() else []
        except OSError:
            return []

    def wait_lines(self, n: int, timeout: float = 30.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.lines()
            if len(got) >= n:
                return got
            time.sleep(0.1)
        return self.lines()

    def __del__(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
