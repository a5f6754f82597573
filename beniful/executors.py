"""Where the grid's jobs run: ``"local"`` (one after another on this machine) or ``"slurm"`` (submitit).

The grid (:mod:`beniful.grid`) plans :class:`Task` objects, each one command line (train one model,
run one notebook with papermill, build the book), in phases; an :class:`Executor` runs one phase at a
time and hands back a :class:`Handle` per task, whose :meth:`Handle.state` is one of ``"queued"``,
``"running"``, ``"done"`` or ``"failed"``. Executors are registered by name in ``EXECUTORS``
(:func:`build` makes one), so another scheduler can be added without touching the grid.

- ``local`` runs each task as a subprocess, in order, with its output in ``<log_dir>/<task>.log``.
- ``slurm`` submits each phase as one job array (``submitit``'s ``map_array``), one task per array
  element, each phase depending on the ones before (``afterany``: a phase runs even when a task of
  the previous one failed, and a notebook trains a missing model itself; the book ``afterok``, so it
  is cancelled when a notebook failed). submitit writes each job's output in
  ``<log_dir>/<job id>_0_log.out`` / ``.err``. A job preempted or at its time limit is requeued by
  submitit (the task is :class:`Command`, a ``Checkpointable``) and a model resumes from its last
  epoch checkpoint (:mod:`beniful.zoo`).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .registry import Registry

__all__ = ["Task", "Resources", "Handle", "Command", "SlurmCommand", "Executor", "wait", "LocalExecutor", "SlurmExecutor",
           "EXECUTORS", "available", "build", "STATES"]

#: what a user sees for each job
STATES = ("queued", "running", "done", "failed")


@dataclass
class Task:
    """One job of the grid: a command line, where it runs and what marks it done.

    Attributes:
        name: unique, readable (``"model/cifar10/badnets/seed0"``, ``"notebook/cifar10/table1"``).
        phase: the phase it belongs to (``"benchmarks"``, ``"models"``, ``"notebooks"``, ``"book"``).
        argv: the command; run with the task's ``env`` added to the job's environment.
        env: extra environment variables (the cache, data and results roots, torch threads).
        cwd: the working folder (the checkout).
        stamp: a file written once the command succeeded (the grid skips a task whose stamp exists).
    """

    name: str
    phase: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    stamp: str | None = None


@dataclass
class Resources:
    """What each job of a phase asks the scheduler for (ignored by the local executor).

    Attributes:
        partition: SLURM partition; ``None``: the cluster's default.
        gpus: GPUs per job (``--gpus-per-node``); 0 for CPU jobs.
        cpus_per_task: CPUs per job; the task's torch threads follow it.
        mem_gb: memory per job in GB; ``None``: the partition's default.
        time_min: wall-clock limit per job, in minutes.
        array_parallelism: at most this many jobs of one array run at once.
        sbatch: further sbatch options, name -> value (``{"account": "lab", "qos": "high"}``).
    """

    partition: str | None = None
    gpus: int = 0
    cpus_per_task: int = 1
    mem_gb: float | None = None
    time_min: int = 120
    array_parallelism: int = 64
    sbatch: dict[str, Any] = field(default_factory=dict)


def _tail(text: str, n: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


class Command:
    """Run a :class:`Task`'s command, stream its output, write its stamp; raise with the output's end on failure.

    A plain callable for the local executor; for SLURM the same object is wrapped as a submitit
    ``Checkpointable`` (:class:`SlurmExecutor`), so a preempted or timed-out job is requeued with
    the same task.
    """

    def __call__(self, task: Task) -> int:
        """Run the task.

        Args:
            task: the task to run.

        Returns:
            0 (the command's exit status).

        Raises:
            RuntimeError: the command failed; the message holds its exit status and last lines.
        """
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **task.env}  # the log follows the job as it runs
        print(f">> {task.name}: {' '.join(task.argv)}", flush=True)
        proc = subprocess.Popen(task.argv, env=env, cwd=task.cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            lines.append(line)
            del lines[:-200]
        rc = proc.wait()
        sys.stdout.flush()
        if rc != 0:
            raise RuntimeError(f"{task.name} failed with exit status {rc}:\n{_tail(''.join(lines))}")
        if task.stamp:
            Path(task.stamp).parent.mkdir(parents=True, exist_ok=True)
            Path(task.stamp).write_text(" ".join(task.argv) + "\n")
        return 0


class Handle(ABC):
    """A submitted task: its state, its log and, once failed, its error."""

    def __init__(self, task: Task) -> None:
        self.task = task

    @property
    @abstractmethod
    def job_id(self) -> str:
        """The scheduler's id of the job (the local executor numbers its tasks)."""

    @property
    @abstractmethod
    def log(self) -> Path:
        """The file holding the job's output."""

    @abstractmethod
    def state(self) -> str:
        """One of :data:`STATES`."""

    @abstractmethod
    def error(self) -> str | None:
        """Why the job failed (its last output lines, or the scheduler's state), else ``None``."""


class Executor(ABC):
    """Runs the tasks of one phase after the phases already submitted (see the module docstring)."""

    name = "executor"

    def __init__(self, log_dir: str | os.PathLike) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)

    @abstractmethod
    def submit(self, tasks: list[Task], resources: Resources, after: list[Handle], after_ok: bool = False
               ) -> list[Handle]:
        """Submit one phase.

        Args:
            tasks: the phase's tasks (not empty).
            resources: what each job asks for.
            after: handles of earlier phases these tasks wait for.
            after_ok: wait for their success (a failure cancels these tasks) instead of their end.

        Returns:
            One handle per task, in order.
        """

    def refresh(self, handles: list[Handle]) -> None:
        """Update the states of many handles at once (one scheduler query); a no-op by default.

        Args:
            handles: the handles to update.
        """


# ------------------------------------------------------------------------------------------- local


class _LocalHandle(Handle):
    def __init__(self, task: Task, number: int, log: Path, state: str, error: str | None, seconds: float = 0.0
                 ) -> None:
        super().__init__(task)
        self._id, self._log, self._state, self._error = str(number), log, state, error
        self.ended_at = time.time()  # the task ran at submit time, just before this handle was made
        self.started_at = self.ended_at - seconds

    @property
    def job_id(self) -> str:
        return self._id

    @property
    def log(self) -> Path:
        return self._log

    def state(self) -> str:
        return self._state

    def error(self) -> str | None:
        return self._error


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


class LocalExecutor(Executor):
    """Runs every task here, one after another, at submit time (a task waits for nothing but order).

    A task of an ``after_ok`` phase is skipped (failed, "a task it waits for failed") when a task it
    waits for failed, as SLURM cancels it.
    """

    name = "local"

    def __init__(self, log_dir: str | os.PathLike) -> None:
        super().__init__(log_dir)
        self._count = 0

    def submit(self, tasks: list[Task], resources: Resources, after: list[Handle], after_ok: bool = False
               ) -> list[Handle]:
        blocked = after_ok and any(h.state() == "failed" for h in after)
        out: list[Handle] = []
        for task in tasks:
            self._count += 1
            log = self.log_dir / f"{_safe(task.name)}.log"
            if blocked:
                out.append(_LocalHandle(task, self._count, log, "failed", "not run: a task it waits for failed"))
                continue
            print(f"[running] {task.name} (log {log})", flush=True)
            t = time.time()
            with open(log, "w") as fh:
                old = sys.stdout
                sys.stdout = fh
                try:
                    Command()(task)
                    state, err = "done", None
                except Exception as exc:  # reported, and the other tasks go on
                    state, err = "failed", str(exc)
                finally:
                    sys.stdout = old
            out.append(_LocalHandle(task, self._count, log, state, err, time.time() - t))
            took = f"after {time.time() - t:.0f} s"
            print(f"[done] {task.name} {took}" if err is None else f"[FAILED] {task.name} (log {log}) {took}: {err}",
                  flush=True)
        return out


# ------------------------------------------------------------------------------------------- slurm

_QUEUED = {"PENDING", "REQUEUED", "CONFIGURING", "SUSPENDED", "PREEMPTED", "RESIZING", "READY", "UNKNOWN"}
_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT"}


try:  # submitit is a dependency; the local executor still works without it
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # pragma: no cover
    _Checkpointable = object  # type: ignore[assignment,misc]


class SlurmCommand(Command, _Checkpointable):  # type: ignore[misc]
    """:class:`Command` as a submitit ``Checkpointable``: a preempted or timed-out job is requeued
    with the same task (and a model resumes from its last epoch checkpoint)."""


class _SlurmHandle(Handle):
    def __init__(self, task: Task, job: Any) -> None:
        super().__init__(task)
        self.job = job
        self._final: tuple[str, str | None] | None = None

    @property
    def job_id(self) -> str:
        return str(self.job.job_id)

    @property
    def log(self) -> Path:
        return Path(self.job.paths.stdout)

    def _raw(self) -> str:
        return str(self.job.watcher.get_state(self.job.job_id, mode="cache")).split()[0].upper()

    def _why(self, raw: str) -> str:
        try:
            exc = self.job.exception()
        except Exception:  # killed before writing a result: the state says it all
            exc = None
        if exc is None:
            hint = " (scancel, or a job it waits for failed)" if raw == "CANCELLED" else ""
            return f"SLURM state {raw}{hint}"
        text = str(exc)
        if "RuntimeError: " in text:  # the task's own message (Command), without submitit's traceback
            text = text.rsplit("RuntimeError: ", 1)[1].split("\n-----", 1)[0]
        return _tail(text) if raw == "COMPLETED" else f"SLURM state {raw}: {_tail(text)}"

    def state(self) -> str:
        if self._final is not None:
            return self._final[0]
        raw = self._raw()
        if raw in _QUEUED:
            return "queued"
        if raw in _RUNNING:
            return "running"
        if raw == "COMPLETED":
            try:
                failed = self.job.exception() is not None
            except Exception:  # the result file could not be read
                failed = True
            self._final = ("failed", self._why(raw)) if failed else ("done", None)
            return self._final[0]
        self._final = ("failed", self._why(raw))
        return "failed"

    def error(self) -> str | None:
        return self._final[1] if self._final is not None else None


class SlurmExecutor(Executor):
    """Submits each phase as one SLURM job array through submitit (see the module docstring).

    Args:
        log_dir: submitit's folder: the pickled tasks, the results and every job's output.
        cluster: submitit's cluster, ``"slurm"``; ``"debug"`` runs the jobs in this process (tests).
    """

    name = "slurm"

    def __init__(self, log_dir: str | os.PathLike, cluster: str = "slurm") -> None:
        super().__init__(log_dir)
        try:
            import submitit
        except ImportError as err:  # a clear message instead of a bare ModuleNotFoundError
            raise ImportError("the slurm executor needs submitit: pip install submitit") from err
        self.cluster = cluster
        self._submitit = submitit

    def _executor(self, resources: Resources, dependency: str | None, kill_on_invalid: bool) -> Any:
        ex = self._submitit.AutoExecutor(folder=str(self.log_dir), cluster=self.cluster)
        extra: dict[str, Any] = dict(resources.sbatch)
        if dependency:
            extra["dependency"] = dependency
            if kill_on_invalid:
                extra["kill_on_invalid_dep"] = "yes"
        params: dict[str, Any] = {"timeout_min": resources.time_min, "cpus_per_task": resources.cpus_per_task,
                                  "slurm_array_parallelism": resources.array_parallelism}
        if resources.gpus:
            params["gpus_per_node"] = resources.gpus
        if resources.mem_gb is not None:
            params["mem_gb"] = resources.mem_gb
        if resources.partition:
            params["slurm_partition"] = resources.partition
        if extra:
            params["slurm_additional_parameters"] = extra
        ex.update_parameters(**params)
        return ex

    def submit(self, tasks: list[Task], resources: Resources, after: list[Handle], after_ok: bool = False
               ) -> list[Handle]:
        ids = sorted({str(h.job_id).split("_")[0] for h in after})
        dependency = f"{'afterok' if after_ok else 'afterany'}:{':'.join(ids)}" if ids and self.cluster == "slurm" else None
        ex = self._executor(resources, dependency, after_ok)
        ex.update_parameters(name=f"beniful-{tasks[0].phase}")
        jobs = ex.map_array(SlurmCommand(), tasks)
        handles: list[Handle] = [_SlurmHandle(t, j) for t, j in zip(tasks, jobs)]
        for h in handles:
            print(f"[queued] {h.task.name} (job {h.job_id}, log {h.log})", flush=True)
        return handles

    def refresh(self, handles: list[Handle]) -> None:
        live = [h for h in handles if isinstance(h, _SlurmHandle) and h._final is None]
        if live:
            live[0].job.watcher.update()


EXECUTORS: Registry[type[Executor]] = Registry("executor")
EXECUTORS.add("local", LocalExecutor)
EXECUTORS.add("slurm", SlurmExecutor)


def available() -> list[str]:
    """The registered executor names (``["local", "slurm"]``)."""
    return EXECUTORS.available()


def build(name: str, log_dir: str | os.PathLike, **kwargs: Any) -> Executor:
    """Make the executor ``name`` writing its logs under ``log_dir``.

    Args:
        name: a name from :func:`available`.
        log_dir: the folder of the jobs' logs.
        **kwargs: the executor's own options (``cluster="debug"`` for ``slurm``).

    Returns:
        The executor.

    Raises:
        ValueError: an unknown name (the valid ones are listed).
    """
    return EXECUTORS.get(name)(log_dir, **kwargs)


def wait(executor: Executor, handles: list[Handle], poll_s: float = 5.0) -> dict[str, int]:
    """Print each job's state as it changes until every job is done or failed.

    Args:
        executor: the executor that submitted the handles.
        handles: every job of the grid.
        poll_s: seconds between scheduler queries.

    Returns:
        A dict with how many jobs ended ``done`` and how many ``failed``.
    """
    seen: dict[int, str] = {}
    started: dict[int, float] = {}
    ended: dict[int, float] = {}
    t0 = time.time()
    while True:
        executor.refresh(handles)
        now = time.time()
        for i, h in enumerate(handles):
            s = h.state()
            if seen.get(i) == s:
                continue
            seen[i] = s
            if isinstance(h, _LocalHandle):  # printed as it ran
                started[i], ended[i] = h.started_at, h.ended_at
                t0 = min(t0, h.started_at)
                continue
            if s == "running" or (s in ("done", "failed") and i not in started):
                started[i] = now
            took = ""
            if s in ("done", "failed"):
                ended[i] = now
                took = f" after {ended[i] - started[i]:.0f} s"
            if s == "failed":
                print(f"[FAILED] {h.task.name} (job {h.job_id}, log {h.log}){took}: {h.error()}", flush=True)
            elif s != "queued":
                print(f"[{s}] {h.task.name} (job {h.job_id}, log {h.log}){took}", flush=True)
        if len(seen) == len(handles) and all(s in ("done", "failed") for s in seen.values()):
            break
        time.sleep(poll_s)
    phases: dict[str, list[int]] = {}
    for i, h in enumerate(handles):
        phases.setdefault(h.task.phase, []).append(i)
    for phase, idx in phases.items():
        first, last = min(started[i] for i in idx), max(ended[i] for i in idx)
        print(f"== {phase}: {len(idx)} job(s) from {first - t0:.0f} s to {last - t0:.0f} s "
              f"({last - first:.0f} s; jobs {sum(ended[i] - started[i] for i in idx):.0f} s in all)", flush=True)
    counts = {s: 0 for s in ("done", "failed")}
    for s in seen.values():
        counts[s] += 1
    return counts
