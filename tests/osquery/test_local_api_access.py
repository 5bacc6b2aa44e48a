"""Who may query the daemon's local API: root and the socket's group (default `podtrail`, 0660).

Real processes under real uids: `podtrail query` run as `nobody` with the socket's group as a
supplementary group gets rows; the same without it is refused by the kernel. The gid is a
number no group on the host has, so the test needs no /etc/group entry.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import require_root

from podtrail.config import Config, ConfigError, OsqueryConfig, from_dict
from podtrail.tables.local_api import LocalAPIServer, socket_access

NOBODY = 65534
GID = 54321  # no name on this host


@pytest.fixture
def api_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="podtrail-api-"))
    d.chmod(0o755)  # pytest's tmp_path is root-only: nobody could not even reach the socket
    yield d
    subprocess.run(["rm", "-rf", str(d)], check=False)


def _query_as_nobody(sock: str, groups: list[int]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "podtrail", "query", "SELECT container_id, pod_name FROM containers",
         "--api-socket", sock, "--format", "json"],
        user=NOBODY, group=NOBODY, extra_groups=groups, capture_output=True, text=True, timeout=60, cwd="/")


def _rows(table: str, constraints: Any) -> list[dict[str, str]]:
    return [{"container_id": "c" * 64, "pod_name": "web-1"}] if table == "containers" else []


def test_a_group_member_can_query_and_others_cannot(api_dir: Path) -> None:
    require_root()
    sock = str(api_dir / "run" / "api.sock")
    api = LocalAPIServer(sock, _rows, GID, 0o660)
    api.start()
    try:
        st = os.stat(sock)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == GID
        assert stat.S_IMODE(os.stat(api_dir / "run").st_mode) & 0o011 == 0o011, "the folder is searchable"
        member = _query_as_nobody(sock, [GID])
        assert member.returncode == 0, member.stderr
        assert json.loads(member.stdout) == [{"container_id": "c" * 64, "pod_name": "web-1"}]
        outsider = _query_as_nobody(sock, [])
        assert outsider.returncode != 0 and "Permission denied" in outsider.stderr
        assert "Traceback" not in outsider.stderr
    finally:
        api.stop()


def test_no_group_means_root_only(api_dir: Path) -> None:
    require_root()
    sock = str(api_dir / "api.sock")
    api = LocalAPIServer(sock, _rows, "", 0o666)
    api.start()
    try:
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        assert _query_as_nobody(sock, [GID]).returncode != 0
    finally:
        api.stop()


def test_missing_default_group_leaves_the_socket_root_only_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert socket_access("podtrail-no-such-group", 0o660) == (None, 0o600)
    assert "groupadd" in caplog.text
    assert socket_access(GID, 0o660) == (GID, 0o660)
    assert socket_access(str(GID), 0o640) == (GID, 0o640)


def test_config_keys_and_their_errors() -> None:
    assert OsqueryConfig().api_socket_group == "podtrail" and OsqueryConfig().api_socket_mode == 0o660
    cfg = from_dict(Config, yaml.safe_load("osquery: {api_socket_group: 10001, api_socket_mode: 0640}"))
    assert cfg.osquery.api_socket_group == 10001 and cfg.osquery.api_socket_mode == 0o640
    assert from_dict(Config, {"osquery": {"api_socket_mode": "0o660"}}).osquery.api_socket_mode == 0o660
    for bad, msg in (({"api_socket_mode": "rw-rw----"}, "octal"), ({"api_socket_mode": "01777"}, "not a file mode"),
                     ({"api_socket_group": "no-such-group-here"}, "no group"), ({"api_socket_group": -1}, "bad gid"),
                     ({"api_socket_group": True}, "group name or gid")):
        with pytest.raises(ConfigError, match=msg):
            from_dict(Config, {"osquery": bad})
