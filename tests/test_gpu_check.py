"""scripts/gpu_check: the one-command GPU check. Here (no CUDA device) it must say so cleanly
with exit code 3; its report format and failure handling are tested with stand-in steps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import mlp_xp

SCRIPTS = Path(__file__).parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))
import gpu_check  # noqa: E402

pytestmark = pytest.mark.subprocess


def _cuda_usable() -> bool:
    return any(state == "ok" for spec, state in mlp_xp.available_backends().items() if "cuda" in spec)


@pytest.mark.skipif(_cuda_usable(), reason="a CUDA device is usable here: the real check runs instead")
def test_no_cuda_device_is_reported_cleanly(tmp_path):
    result = subprocess.run(
        ["bash", str(SCRIPTS / "gpu_check.sh"), "--out", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == gpu_check.NO_CUDA_DEVICE == 3, result.stderr
    assert "mlp_xp GPU check: no CUDA device" in result.stdout
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["kind"] == "mlp_xp.gpu_check" and report["status"] == "no CUDA device"
    assert report["steps"] == [] and report["backends"] == []
    assert set(report["cuda"]["backends"]) == {"cuda", "torch:cuda", "jax:cuda"}
    assert all(reason != "ok" for reason in report["cuda"]["backends"].values())


def test_report_records_each_step_and_fails_on_any(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        gpu_check,
        "cuda_facts",
        lambda: {
            "cuda_driver_version": "13.0",
            "gpus": ["H100, 80 GiB"],
            "backends": {"cuda": "ok", "torch:cuda": "no", "jax:cuda": "ok"},
        },
    )
    python = sys.executable

    def plan(out, specs, data_dir, quick):
        assert specs == ["cuda", "jax:cuda"]
        (out / "bench.json").write_text(
            json.dumps(
                {
                    "records": [
                        {
                            "backend": "cupy:0",
                            "model": "784-256-10",
                            "batch_size": 256,
                            "samples_per_s": 1.5e6,
                            "ratios": {"torch": {"median": 0.8, "min_min": 0.7}},
                            "ops_per_step": 38,
                        }
                    ]
                }
            )
        )
        return [
            gpu_check.Step("tests", [python, "-c", "print('12 passed, 3 skipped in 1.0s')"], 30),
            gpu_check.Step("train default cuda", [python, "-c", "print('done: 10 epochs; test accuracy 0.8812')"], 30),
            gpu_check.Step("bench", [python, "-c", "import sys; print('boom'); sys.exit(2)"], 30),
        ]

    monkeypatch.setattr(gpu_check, "plan", plan)
    assert gpu_check.main(["--out", str(tmp_path)]) == 1
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["status"] == "failed" and report["failed"] == ["bench"]
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["tests"]["figures"] == {"passed": 12, "skipped": 3}
    assert steps["train default cuda"]["figures"] == {"test_accuracy": 0.8812}
    assert steps["bench"]["exit_code"] == 2 and steps["bench"]["tail"] == "boom"
    assert (tmp_path / "logs" / "bench.log").read_text().endswith("boom\n")
    assert report["bench"] == [
        {
            "backend": "cupy:0",
            "model": "784-256-10",
            "batch": 256,
            "samples_per_s": 1500000,
            "ratios": {"torch": 0.8},
            "ops_per_step": 38,
        }
    ]
    printed = capsys.readouterr().out
    assert "mlp_xp GPU check: failed  (CUDA driver 13.0, GPUs: H100, 80 GiB)" in printed
    assert "1,500,000 samples/s" in printed


def test_a_step_past_its_time_limit_is_killed_with_what_it_started(tmp_path):
    """An MPI launch or torch's compile workers are grandchildren: they hold the output pipe (and,
    on a GPU machine, the GPU), so the whole process group goes."""
    grandchild = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])"
    code = f"{grandchild}; print('started', flush=True); time.sleep(60)"
    step = gpu_check.Step("slow", [sys.executable, "-c", code], 2)
    gpu_check.run(step, tmp_path)
    assert step.status == "timed out" and step.seconds < 20
    assert step.tail == "started"


def _fake_cuda(monkeypatch) -> None:
    facts = {"cuda_driver_version": "13.0", "gpus": ["H100"], "backends": {"cuda": "ok"}}
    monkeypatch.setattr(gpu_check, "cuda_facts", lambda: facts)


def test_steps_share_one_time_budget_and_the_report_is_kept_after_each(tmp_path, monkeypatch):
    _fake_cuda(monkeypatch)
    python, report = sys.executable, tmp_path / "gpu_check.json"
    read_report = f"import json; steps = json.load(open({str(report)!r}))['steps']; print([s['status'] for s in steps])"
    show_env = "import os; print(os.environ['MLP_XP_DATA'], os.environ['XLA_PYTHON_CLIENT_PREALLOCATE'])"
    steps = [
        gpu_check.Step("environment", [python, "-c", show_env], 30),
        gpu_check.Step("report so far", [python, "-c", read_report], 30),
        gpu_check.Step("too long", [python, "-c", "import time; time.sleep(60)"], 300),
        gpu_check.Step("no time left", [python, "-c", "print('ran')"], 30),
    ]
    monkeypatch.setattr(gpu_check, "plan", lambda out, specs, data_dir, quick: steps)
    assert gpu_check.main(["--out", str(tmp_path), "--data-dir", str(tmp_path), "--budget", "12"]) == 1
    written = json.loads(report.read_text())
    assert [s["status"] for s in written["steps"]] == ["passed", "passed", "timed out", "skipped"]
    assert written["failed"] == ["too long", "no time left"] and written["status"] == "failed"
    assert steps[0].tail == f"{tmp_path} false"
    assert steps[1].tail == "['passed', 'not run', 'not run', 'not run']"
    assert steps[2].seconds < 20 and "budget left" in steps[3].tail
