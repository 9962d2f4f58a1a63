"""`copd doctor`: the environment report, the GPU check's CPU behaviour, and the engine path
on a machine without the dashboard's packages (the GPU box: no streamlit, SQLAlchemy,
pandas or plotly)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from copd.tools import doctor

REPO = Path(__file__).resolve().parent.parent
BLOCKED = ("streamlit", "sqlalchemy", "plotly", "pandas", "alembic", "app", "storage")

# A sitecustomize on PYTHONPATH: every Python process started with it (and its children)
# sees the blocked packages as not installed. A None entry in sys.modules makes `import x`
# raise ImportError and `importlib.util.find_spec("x")` return None, as for a package that
# is absent (torch and transformers probe optional packages with find_spec).
SITECUSTOMIZE = textwrap.dedent(
    f"""
    import sys

    for name in {BLOCKED!r}:
        sys.modules[name] = None
    """
)


def _blocked_env(tmp_path: Path) -> dict:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{REPO}", OMP_NUM_THREADS="1")
    env["HF_HUB_OFFLINE"] = "1"
    return env


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")
def test_gpu_check_without_a_gpu_says_so_runs_nothing_and_exits_0(capsys):
    assert doctor.main(["--gpu"]) == 0
    out = capsys.readouterr().out
    assert "no CUDA GPU is visible to torch on this machine" in out
    assert "nothing that needs a GPU was run" in out
    assert "[doctor]" not in out and "GPU CHECK" not in out  # no part was started
    assert out.strip().splitlines()[-1].startswith("no CUDA GPU")  # the clear last line


def test_doctor_prints_the_environment(capsys):
    assert doctor.main([]) == 0
    out = capsys.readouterr().out
    assert f"torch        {torch.__version__}" in out
    assert "transformers" in out and "peft" in out and "vllm" in out


def test_engine_path_imports_and_runs_without_dashboard_or_store_packages(tmp_path, tiny_model_dir):
    """The blocked packages really are blocked, the engine modules import, `copd doctor`
    runs to completion, and the GPU check's `tiny` part (a short CoPD training run, in a
    child process that inherits the block) passes on the CPU."""
    env = _blocked_env(tmp_path)
    code = textwrap.dedent(
        f"""
        import importlib, sys
        for name in {BLOCKED!r}:
            try:
                importlib.import_module(name)
            except ImportError:
                pass
            else:
                raise SystemExit(f"{{name}} was not blocked")
        for mod in ("copd.cli", "copd.tools.doctor", "copd.tools.plan", "copd.train.algorithms", "copd.train.world",
                    "copd.train.algorithms.copd", "copd.tasks", "copd.spec.presets"):
            importlib.import_module(mod)
        from copd.cli import main as copd_main
        assert copd_main(["doctor"]) == 0 and copd_main(["plan", "--params", "1000"]) == 0
        from copd.tools.doctor import main
        rc = main(["--gpu", "--allow-cpu", "--device", "cpu", "--parts", "tiny",
                   "--tiny-model", {tiny_model_dir!r}])
        loaded = sorted(m for m, v in sys.modules.items()
                        if v is not None and m.split(".")[0] in {BLOCKED!r})
        print("LOADED", loaded)
        raise SystemExit(rc)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "LOADED []" in out
    lines = out.strip().splitlines()
    table = lines[lines.index(next(x for x in lines if x.startswith("part "))) :]
    assert any(x.startswith("tiny") and " pass " in x for x in table), out[-2000:]
    assert "GPU CHECK: PASS" in out
    assert "rollout" in out and "tok/s" in out and "GRPO step" in out


def test_a_failing_or_hanging_part_does_not_stop_the_others(tmp_path, monkeypatch):
    """Parts run in child processes with a timeout; the table reports each one."""
    monkeypatch.setitem(doctor.TIMEOUTS, "tiny", 2)
    status, secs, _ = doctor._spawn(
        [sys.executable, "-c", "import time; time.sleep(30)"], 2, tmp_path / "a.log"
    )
    assert status.startswith("timeout") and secs < 15
    status, _, tail = doctor._spawn(
        [sys.executable, "-c", "raise SystemExit('boom')"], 20, tmp_path / "b.log"
    )
    assert status == "fail (exit 1)" and "boom" in tail
    table = doctor.format_table([("tiny", "timeout (2 s)", 2.0, ""), ("lora", "skip", 0.0, "")])
    assert table.splitlines()[-1] == "GPU CHECK: FAIL"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")
def test_gpu_check_script_under_a_given_python_exits_0_without_a_gpu():
    env = dict(os.environ, PYTHON=sys.executable, WHEELS=str(REPO / "no-such-wheels"))
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh")], env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("no CUDA GPU is visible")
