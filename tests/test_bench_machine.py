"""The one machine record of benchmarks: where they ran and which code ran."""

from pathlib import Path

import torch

from gflow.bench.machine import code_state, machine_info


def test_machine_info_names_the_machine_and_threads():
    info = machine_info()
    assert info["cpu"] and info["cpu_count"] >= 1 and info["python"].count(".") == 2
    assert info["torch"] == torch.__version__ and info["threads"] == torch.get_num_threads()
    assert info["load_average_1m"] is None or info["load_average_1m"] >= 0
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    family_model = info["cpu_family_model"]
    assert family_model is None or family_model.startswith("family ")
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        first: dict[str, str] = {}
        for key, _, value in (line.partition(":") for line in cpuinfo.read_text().splitlines()):
            first.setdefault(key.strip(), value.strip())
        if "model name" in first:
            assert info["cpu"] == first["model name"]
        if "cpu family" in first and "model" in first:
            assert family_model == f"family {first['cpu family']} model {first['model']}"


def test_code_state_outside_a_checkout_is_empty(tmp_path):
    assert code_state(tmp_path) == {"gflow_commit": None, "gflow_uncommitted_files": []}
    here = code_state()
    assert here["gflow_commit"] is None or len(here["gflow_commit"]) == 40
