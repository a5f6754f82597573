"""beniful.executors: the local executor runs tasks in order and reports failures without stopping;
the slurm one submits job arrays with dependencies (against a real SLURM only where one is up:
``BENIFUL_TEST_SLURM=1``, set by the CI's SLURM step, .ci/slurm_grid.sh)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from beniful import executors
from beniful.executors import Resources, Task


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_the_registry_names_both_executors_and_rejects_others(tmp_path):
    assert executors.available() == ["local", "slurm"]
    with pytest.raises(ValueError, match="local, slurm"):
        executors.build("kubernetes", tmp_path)


def test_local_runs_in_order_reports_a_failure_and_goes_on(tmp_path, capsys):
    out = tmp_path / "order.txt"
    stamp = tmp_path / "stamps" / "ok"
    tasks = [Task("first", "models", py(f"open({str(out)!r}, 'a').write('1')"), stamp=str(stamp)),
             Task("broken", "models", py("print('the reason'); raise SystemExit(3)"), stamp=str(tmp_path / "bad")),
             Task("third", "models", py(f"open({str(out)!r}, 'a').write('3')"), env={"X_GRID": "x"})]
    ex = executors.build("local", tmp_path / "logs")
    hs = ex.submit(tasks, Resources(), [])
    assert [h.state() for h in hs] == ["done", "failed", "done"]
    assert out.read_text() == "13"
    assert stamp.is_file() and not (tmp_path / "bad").exists()
    err = hs[1].error()
    assert "exit status 3" in err and "the reason" in err
    assert "the reason" in hs[1].log.read_text()
    counts = executors.wait(ex, hs, poll_s=0)
    assert counts == {"done": 2, "failed": 1}
    printed = capsys.readouterr().out
    assert "[FAILED] broken" in printed and str(hs[1].log) in printed


def test_local_after_ok_is_not_run_when_what_it_waits_for_failed(tmp_path):
    ex = executors.build("local", tmp_path)
    first = ex.submit([Task("bad", "notebooks", py("raise SystemExit(1)"))], Resources(), [])
    marker = tmp_path / "ran"
    book = ex.submit([Task("book", "book", py(f"open({str(marker)!r}, 'w')"))], Resources(), first, after_ok=True)
    assert book[0].state() == "failed" and "waits for failed" in book[0].error()
    assert not marker.exists()
    anyway = ex.submit([Task("nb", "notebooks", py(f"open({str(marker)!r}, 'w')"))], Resources(), first)
    assert anyway[0].state() == "done" and marker.exists()


def test_the_task_environment_reaches_the_command(tmp_path):
    out = tmp_path / "env.txt"
    ex = executors.build("local", tmp_path)
    code = f"import os; open({str(out)!r}, 'w').write(os.environ['BENIFUL_NUM_THREADS'])"
    ex.submit([Task("t", "models", py(code), env={"BENIFUL_NUM_THREADS": "3"})], Resources(), [])
    assert out.read_text() == "3"


SLURM = os.environ.get("BENIFUL_TEST_SLURM") == "1" and shutil.which("sbatch") is not None


@pytest.mark.skipif(not SLURM, reason="needs a running SLURM (BENIFUL_TEST_SLURM=1; .ci/slurm/up.sh)")
def test_slurm_arrays_dependencies_and_failures(tmp_path):
    ex = executors.build("slurm", tmp_path / "jobs")
    res = Resources(cpus_per_task=1, time_min=5)
    phase1 = ex.submit([Task(f"m{i}", "models", py(f"print('model {i}'); raise SystemExit({int(i == 1)})"))
                        for i in range(3)], res, [])
    assert len({h.job_id.split("_")[0] for h in phase1}) == 1  # one job array
    book = ex.submit([Task("book", "book", py("print('book')"))], res, phase1, after_ok=True)
    nb = ex.submit([Task("nb", "notebooks", py("print('notebook')"))], res, phase1)
    listed = subprocess.run(["squeue", "--states=all", "-h", "-o", "%i %r"], capture_output=True, text=True).stdout
    assert phase1[0].job_id.split("_")[0] in listed and book[0].job_id in listed
    counts = executors.wait(ex, phase1 + book + nb, poll_s=1)
    assert counts == {"done": 3, "failed": 2}
    assert [h.state() for h in phase1] == ["done", "failed", "done"]
    assert "exit status 1" in phase1[1].error()
    assert book[0].state() == "failed" and "CANCELLED" in book[0].error()  # afterok on a failure
    assert nb[0].state() == "done" and "notebook" in nb[0].log.read_text()
