"""The arithmetic of the kernel-cost benches (bench/bpf_cost.py, the split in bench/exec_storm.py)
on known numbers, and, on the real kernel, that the agent's programs are found by their ids
in /proc/PID/fdinfo (what both benches count)."""

from __future__ import annotations

import ctypes as ct
import os

import pytest
from conftest import require_core

from bench.bpf_cost import summarize
from bench.exec_storm import baseline_noise, bpf_ns_per_exec, prog_ids, slowdowns


def test_summarize_takes_medians_and_sums_the_once_per_exec_programs() -> None:
    rounds = [
        {"programs": {"process/on_exec": (3000, 10), "process/on_fork": (1000, 10), "file/enter_openat": (500, 50)}},
        {"programs": {"process/on_exec": (5000, 10), "process/on_fork": (1200, 12), "file/enter_openat": (700, 70)}},
        {"programs": {"process/on_exec": (4000, 10), "process/on_fork": (1100, 11), "file/enter_openat": (600, 60)}},
    ]
    s = summarize(rounds, execs=10)
    once = s["process_sensor_one_run_each (ns per exec, whatever else the node runs)"]
    assert once["programs"] == ["on_exec", "on_fork"]  # not the file sensor's opens
    assert once["median_ns"] == 400 + 100 and once["min_ns"] == 300 + 100
    assert s["by_sensor"] == {"process": 400 + 110, "file": 60}  # median ns per run x median runs per exec
    assert s["ns_per_exec_rounds"] == [450, 690, 570]


def test_storm_slowdowns_are_against_the_baselines_around_each_round() -> None:
    # round 0 between baselines 10 and 12 (mean 11), round 1 between 12 and 8 (mean 10)
    assert slowdowns([11.0, 12.5], [10.0, 12.0, 8.0]) == pytest.approx([0.0, 25.0])
    with pytest.raises(ValueError):
        slowdowns([11.0, 12.5], [10.0, 12.0])


def test_baseline_noise_is_each_inner_baseline_against_its_neighbours() -> None:
    """The noise floor printed next to the slowdowns: a baseline that took 10 % longer than
    the mean of the two around it reads +10 %; the first and last have no two neighbours."""
    assert baseline_noise([10.0, 11.0, 12.0, 12.0]) == pytest.approx([0.0, 4.3478260869565215])
    assert baseline_noise([10.0, 11.0]) == []


def test_storm_estimate_counts_each_program_at_most_once_per_exec() -> None:
    before = {1: (0, 0), 2: (0, 0), 3: (100, 1)}
    after = {1: (4000, 2), 2: (3000, 1), 3: (100, 1), 4: (50, 5)}  # 4: loaded since, 5 runs
    total, own = bpf_ns_per_exec(before, after, n=1)
    assert total == 4000 + 3000 + 50
    assert own == 2000 + 3000 + 10  # program 1 ran twice (another exec on the node): counted once


def test_prog_ids_finds_a_loaded_sensors_programs() -> None:
    require_core()
    from podtrail.bpf.libbpf import lib
    from podtrail.bpf.process import build_process_source
    from podtrail.config import SensorConfig

    src = build_process_source(SensorConfig())
    src.load()
    try:
        assert src.obj is not None
        fn = lib().c.bpf_program__fd
        fn.restype, fn.argtypes = ct.c_int, [ct.c_void_p]
        mine = set()
        for ph in src.obj.programs().values():
            fd = fn(ph)
            if fd >= 0:
                with open(f"/proc/self/fdinfo/{fd}") as f:
                    mine |= {int(line.split()[1]) for line in f if line.startswith("prog_id:")}
        assert mine and mine <= prog_ids(os.getpid())
    finally:
        src.close()
