"""The compiled CO-RE objects match their sources: an edited .bpf.c or header without a
`make bpf` fails here, so a stale object cannot ship."""

from __future__ import annotations

from conftest import require

from podtrail.bpf.objects import DIGEST_FILE, object_path, source_files, sources_digest


def test_objects_are_built_from_the_current_sources() -> None:
    require(DIGEST_FILE.exists(), f"{DIGEST_FILE} (run make bpf)")
    assert DIGEST_FILE.read_text().strip() == sources_digest(), "BPF sources changed since the objects were built: run `make bpf`"
    for src in source_files():
        if src.name.endswith(".bpf.c"):
            obj = object_path(src.name.removesuffix(".bpf.c"))
            assert obj.exists(), f"{obj} missing: run `make bpf`"


def test_no_bcc_in_the_process_sensor() -> None:
    """Building and loading the process sensor imports no BCC (no compiler at run time)."""
    import subprocess
    import sys

    code = ("import sys; from podtrail.bpf.process import build_process_source; "
            "from podtrail.config import SensorConfig; build_process_source(SensorConfig()); "
            "assert 'bcc' not in sys.modules, 'bcc imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
