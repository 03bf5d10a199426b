"""MetaSchedule tuning of a prepared module, into one tuning database per target.

:func:`tune` spends a trial budget over the module's tasks in two passes: half by FLOPs
(:func:`allocate_trials`), the rest by each task's share of the measured latency
(:func:`allocate_by_latency`), each pass in groups of equal budget. The JSON database in
``work_dir`` (:func:`open_database`) is shared by every candidate and run of a target:
tasks that it already holds enough measured records for are skipped, so a second run is
cheap.
:func:`pose_tuner.compile.pipeline.compile_module` then applies it.

Candidates are built in this process (:class:`InProcessBuilder`): MetaSchedule's
``LocalBuilder`` starts fresh worker processes for every batch, and on a 2-core machine
their start-up (importing every tensor intrinsic) exceeded its timeout. They are measured
on this machine under its timing lock (:class:`LockedRunner`) or on the devices of an RPC
pool (:func:`trial_session`). The design space, the intrinsics to register and the build
come from the target's compile backend (:mod:`pose_tuner.compile.backends`).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import tvm
import tvm_ffi
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.builder import BuilderInput, BuilderResult, PyBuilder
from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback
from tvm.s_tir.meta_schedule.runner import PyRunner

from pose_tuner.compile.allocation import allocate_by_latency, allocate_trials
from pose_tuner.compile.backends import backend_for

ProgressFn = Callable[[str], None]

#: the database's files in a tuning ``work_dir``
WORKLOAD_FILE = "database_workload.json"
RECORDS_FILE = "database_tuning_record.json"
BUDGETS_FILE = "task_budgets.json"
#: the second pass's trials per ``task@budget``, fixed by the run that first split them
PLANS_FILE = "task_plans.json"


@derived_object
class InProcessBuilder(PyBuilder):
    """MetaSchedule builder that compiles candidates in this process; errors are data.

    Artifacts go below one temporary folder (``self.dir``), removed by :func:`tune`.
    """

    def __init__(self, cross_cc: str | None = None):
        self.dir = tempfile.mkdtemp(prefix="ptuner-ms-")
        #: link artifacts for a remote device with this cross compiler (a .so its RPC
        #: server loads as is) instead of a tar the device would link itself
        self.cross_cc = cross_cc

    def build(self, build_inputs: list[BuilderInput]) -> list[BuilderResult]:
        from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock
        from tvm.support.tar import tar

        results = []
        for item in build_inputs:
            try:
                mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(item.mod)
                rt_mod = backend_for(item.target).build(mod, item.target)
                # one folder per artifact: RemoveBuildArtifact deletes the artifact's folder
                folder = tempfile.mkdtemp(dir=self.dir)
                if self.cross_cc:
                    from tvm.support import cc

                    path = os.path.join(folder, "mod.so")
                    rt_mod.export_library(path, fcompile=cc.cross_compiler(self.cross_cc))
                else:
                    path = os.path.join(folder, "mod.tar")
                    rt_mod.export_library(path, fcompile=tar)
                results.append(BuilderResult(path, None))
            except Exception as exc:  # noqa: BLE001 - a failed build is a result
                results.append(BuilderResult(None, f"InProcessBuilder: {exc}"))
        return results


@derived_object
class _Progress(PyMeasureCallback):
    """Reports measured/failed trials as tuning goes."""

    def __init__(self, total: int, report: ProgressFn, t0: float):
        self.total = total
        self.report = report
        self.t0 = t0
        self.done = 0
        self.ok = 0
        self.last = 0.0

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
        self.done += len(runner_results)
        self.ok += sum(1 for r in runner_results if r.error_msg is None)
        now = time.time()
        if self.done < self.total and now - self.last < 5.0:
            return
        self.last = now
        elapsed = now - self.t0
        eta = elapsed / self.done * max(0, self.total - self.done) if self.done else 0
        self.report(
            f"tuning: {self.done}/{self.total} trials ({self.ok} measured), task {task_id}, "
            f"elapsed {elapsed:.0f}s, eta {eta:.0f}s"
        )


@dataclass(frozen=True)
class TuneStats:
    tasks: int
    tasks_tuned: int
    tasks_reused: int
    trials_run: int
    trials_measured: int
    seconds: float
    #: tasks left without one measured schedule (every candidate failed to build or run,
    #: or a post-processor rejected them all): they are built unscheduled
    unscheduled: tuple[str, ...] = ()


def open_database(work_dir: str) -> ms.database.JSONDatabase:
    os.makedirs(work_dir, exist_ok=True)
    return ms.database.JSONDatabase(
        path_workload=os.path.join(work_dir, WORKLOAD_FILE),
        path_tuning_record=os.path.join(work_dir, RECORDS_FILE),
        module_equality="structural",
    )


def recorded_kernels(work_dir: str) -> list[str]:
    """The int8 kernels (names in :data:`pose_tuner.compile.kernels.KERNELS`) whose tensor
    intrinsic the tuning records in ``work_dir`` use: records replay only with it
    registered. Empty without records."""
    try:
        with open(os.path.join(work_dir, RECORDS_FILE), encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return []
    from pose_tuner.compile.kernels import KERNELS

    return [k.name for k in KERNELS.values() if re.search(rf"\b{re.escape(k.intrin)}\b", text)]


def _scheduled(task) -> bool:
    """Whether a task's kernel comes scheduled (``tirx.is_scheduled`` on its module or
    its function, as :func:`pose_tuner.compile.int8.channels.packed_gather` marks it):
    there is nothing to tune."""
    import tvm

    mods = [task.mod, *task.dispatched]
    return any(
        (m.attrs and m.attrs.get("tirx.is_scheduled", False))
        or any(isinstance(f, tvm.tirx.PrimFunc) and f.attrs
               and f.attrs.get("tirx.is_scheduled", False) for _, f in m.functions_items())
        for m in mods)


def _measured_records(db, mod) -> int:
    if not db.has_workload(mod):
        return 0
    recs = db.get_top_k(db.commit_workload(mod), 1 << 20)
    return sum(1 for r in recs if r.run_secs and all(float(s) < 1e9 for s in r.run_secs))


def _task_key(task) -> str:
    return f"{task.task_name}:{tvm_ffi.structural_hash(task.dispatched[0]) & 0xFFFFFFFFFFFF:x}"


def _tunable_latency(db, mod) -> float | None:
    """The fastest measured record's mean time of a task's workload, in seconds; None
    without one, or when its schedule sampled no decision (a custom rule's single
    schedule: more trials find nothing else)."""
    if not db.has_workload(mod):
        return None
    recs = db.get_top_k(db.commit_workload(mod), 1)
    if not recs or not recs[0].run_secs or not recs[0].trace.decisions:
        return None
    secs = [float(s) for s in recs[0].run_secs]
    return sum(secs) / len(secs) if all(s < 1e9 for s in secs) else None


def _load_budgets(work_dir: str, name: str = BUDGETS_FILE) -> dict[str, int]:
    import json

    try:
        with open(os.path.join(work_dir, name), encoding="utf-8") as f:
            return {str(k): int(v) for k, v in json.load(f).items()}
    except (OSError, ValueError):
        return {}


def _save_budgets(work_dir: str, budgets: dict[str, int], name: str = BUDGETS_FILE) -> None:
    import json

    tmp = os.path.join(work_dir, name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(budgets, f, indent=1, sort_keys=True)
    os.replace(tmp, os.path.join(work_dir, name))


def register_intrinsics(target: tvm.target.Target, int8_kernel: str | None = None,
                        work_dir: str | None = None) -> None:
    """Register what tuning ``target`` may use: TVM's tensor intrinsics of its
    architecture only (:meth:`~pose_tuner.compile.backends.base.Backend.load_tensor_intrinsics`),
    then (:meth:`~pose_tuner.compile.backends.base.Backend.register_intrinsics`) the
    target's own ``int8_kernel`` if it has one, and the kernels that the records already in
    ``work_dir`` use (MetaSchedule replays them). Nothing x86-specific for a target that
    names no kernel (aarch64, cuda)."""
    kernels = [int8_kernel] if int8_kernel is not None else []
    if work_dir is not None:
        kernels += [k for k in recorded_kernels(work_dir) if k not in kernels]
    backend = backend_for(target)
    backend.load_tensor_intrinsics(target)
    backend.register_intrinsics(kernels)


def tune(
    mod: tvm.IRModule,
    target: tvm.target.Target,
    work_dir: str,
    max_trials: int,
    report: ProgressFn = lambda _msg: None,
    runner_timeout_s: float = 60.0,
    seed: int | None = 0,
    rpc_spec=None,
    int8_kernel: str | None = None,
) -> TuneStats:
    """Tune a prepared module with about ``max_trials`` trials over all its tasks.

    Two passes: half the trials by :func:`allocate_trials` (FLOPs), then the rest by
    :func:`allocate_by_latency` (each task's share of the latency the first pass
    measured), which goes on from the first pass's best records. The second pass's
    split is stored in ``work_dir`` (:data:`PLANS_FILE`) when made, so a re-run asks for
    the same trials. A task whose workload already has its budget of measured records in
    ``work_dir`` (or was tuned with that budget before) is reused as is, so re-running a
    search, or tuning another candidate that shares layers, costs only the new tasks.
    With ``rpc_spec`` (:class:`pose_tuner.measure.rpc.RPCSpec`) trials are cross-linked
    here and measured on the devices of its pool, as many at once as the pool has
    devices. ``int8_kernel`` (a name in :mod:`pose_tuner.compile.kernels`, the target's
    ``int8_kernel``) is the tensor intrinsic the design space tiles int8 reductions with;
    None leaves the space to TVM's defaults for the target (it must be None for targets
    without int8 kernels: cuda).
    """
    from tvm.s_tir.analysis import estimate_tir_flops

    t0 = time.time()
    register_intrinsics(target, int8_kernel, work_dir)
    backend_for(target).enable_codegen()
    db = open_database(work_dir)
    tasks = [t for t in ms.relax_integration.extract_tasks(mod, target) if not _scheduled(t)]
    flops = [float(estimate_tir_flops(t.dispatched[0])) * t.weight for t in tasks]
    first = allocate_trials(flops, max(1, max_trials // 2))
    rest = max(0, max_trials - sum(first))
    budgets = _load_budgets(work_dir)

    def pending(t, b: int) -> bool:
        # done when it has its budget of measured records, or was already tuned with that
        # budget (small design spaces can run out of distinct candidates first)
        return 0 < b and _measured_records(db, t.dispatched[0]) < b \
            and budgets.get(_task_key(t), 0) < b

    todo = [(t, b, b) for t, b in zip(tasks, first) if pending(t, b)]
    report(
        f"tuning: {len(tasks)} tasks, {sum(first)} trials by FLOPs "
        f"({min(first) if first else 0}-{max(first) if first else 0} per task), then "
        f"{rest} by measured latency; {len(tasks) - len(todo)} tasks reused from {work_dir}"
    )
    progress = _Progress(sum(b for _, b, _ in todo) + rest, report, t0)
    builder = InProcessBuilder(rpc_spec.cross_cc if rpc_spec is not None else None)
    tuned = {id(t) for t, _, _ in todo}
    try:
        _tune_groups(todo, target, work_dir, seed, runner_timeout_s, builder, db, progress,
                     budgets, rpc_spec, int8_kernel)
        extra = _second_pass(tasks, db, rest, max_trials, work_dir)
        todo = [(t, e, b + e) for t, b, e in zip(tasks, first, extra) if e and pending(t, b + e)]
        progress.total = progress.done + sum(e for _, e, _ in todo)
        if todo:
            report(f"tuning: {progress.total - progress.done} trials on the {len(todo)} tasks "
                   f"that take the most time")
        tuned |= {id(t) for t, _, _ in todo}
        _tune_groups(todo, target, work_dir, seed, runner_timeout_s, builder, db, progress,
                     budgets, rpc_spec, int8_kernel)
    finally:
        import shutil

        shutil.rmtree(builder.dir, ignore_errors=True)
    unscheduled = tuple(t.task_name for t in tasks if _measured_records(db, t.dispatched[0]) == 0)
    if unscheduled:
        report(f"tuning: {len(unscheduled)} of {len(tasks)} tasks have no working schedule "
               f"and are built without one: {', '.join(unscheduled)} (see the MetaSchedule "
               f"logs in {work_dir}/logs)")
    return TuneStats(
        len(tasks), len(tuned), len(tasks) - len(tuned), progress.done, progress.ok,
        time.time() - t0, unscheduled,
    )


def _second_pass(tasks, db, rest: int, max_trials: int, work_dir: str) -> list[int]:
    """Each task's trials in the second pass of a ``max_trials`` budget: as stored when a
    run made that split, else :func:`allocate_by_latency` over the latencies ``db`` holds
    now (then stored). Tasks with one possible schedule get none."""
    plans = _load_budgets(work_dir, PLANS_FILE)
    keys = [f"{_task_key(t)}@{max_trials}" for t in tasks]
    lat = [None if (s := _tunable_latency(db, t.dispatched[0])) is None else s * t.weight
           for t in tasks]
    fresh = allocate_by_latency(lat, rest)
    extra = [plans.get(k, e) for k, e in zip(keys, fresh)]
    if any(k not in plans for k in keys):
        plans.update(zip(keys, extra))
        _save_budgets(work_dir, plans, PLANS_FILE)
    return extra


@derived_object
class LockedRunner(PyRunner):
    """A runner on this machine whose batches of measurements hold the machine's timing
    lock (:mod:`pose_tuner.measure.timing_lock`), so that tuning and another process's latency
    measurements do not time at the same moment. ``LocalRunner.run`` measures before it
    returns, so the lock covers the measurements and nothing else."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def run(self, runner_inputs):
        from pose_tuner.measure.timing_lock import timing_lock

        with timing_lock():
            return self.inner.run(runner_inputs)


def _runner(runner_timeout_s: float, rpc_spec=None):
    """MetaSchedule's runner: this CPU, or the devices of an RPC pool."""
    evaluator = ms.runner.EvaluatorConfig(number=1, repeat=3, min_repeat_ms=40,
                                          enable_cpu_cache_flush=False)
    if rpc_spec is None:
        return LockedRunner(ms.runner.LocalRunner(timeout_sec=runner_timeout_s,
                                                  evaluator_config=evaluator))
    from pose_tuner.measure.rpc import pool_devices

    pool = len(pool_devices(rpc_spec))  # each trial would wait out its timeout on none
    return ms.runner.RPCRunner(
        rpc_config=ms.runner.RPCConfig(
            tracker_host=rpc_spec.tracker_host, tracker_port=rpc_spec.tracker_port,
            tracker_key=rpc_spec.key, session_priority=1,
            session_timeout_sec=int(max(runner_timeout_s, 60))),
        evaluator_config=evaluator, max_workers=pool, f_create_session=trial_session)


def trial_session(rpc_config):
    """A MetaSchedule trial's session (RPCRunner's ``f_create_session``, run in its worker
    processes): :func:`pose_tuner.measure.rpc.connect`, so that trials fail at once when the pool's
    devices went down mid-tuning instead of each waiting out its timeout."""
    from pose_tuner.measure.rpc import RPCSpec, connect

    spec = RPCSpec(rpc_config.tracker_host, rpc_config.tracker_port, rpc_config.tracker_key)
    return connect(spec, timeout_s=rpc_config.session_timeout_sec)


@contextlib.contextmanager
def _unnamed_log_handlers_set_aside():
    """MetaSchedule's logging set-up (``create_loggers``) lists every handler of its logger
    by name and fails (``'NoneType' object has no attribute 'format'``) on one without a
    name, such as a handler an application or test harness attached; such handlers are
    set aside while tuning and put back after."""
    import logging

    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    aside = [h for h in logger.handlers if h.get_name() is None]
    for h in aside:
        logger.removeHandler(h)
    try:
        yield
    finally:
        for h in aside:
            logger.addHandler(h)


def _tune_groups(todo, target, work_dir, seed, runner_timeout_s, builder, db, progress,
                 budgets, rpc_spec=None, int8_kernel=None) -> None:
    """Tune ``todo`` ((task, trials, budget) triples: run ``trials``, then record that the
    task was tuned to ``budget``) in groups of equal trials, recording each group's budgets
    as soon as it is done."""
    with _unnamed_log_handlers_set_aside():
        _tune_groups_now(todo, target, work_dir, seed, runner_timeout_s, builder, db,
                         progress, budgets, rpc_spec, int8_kernel)


def _tune_groups_now(todo, target, work_dir, seed, runner_timeout_s, builder, db, progress,
                     budgets, rpc_spec, int8_kernel) -> None:
    for per_task in sorted({n for _, n, _ in todo}):
        group = [(t, b) for t, n, b in todo if n == per_task]
        contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
            extracted_tasks=[t for t, _ in group],
            work_dir=work_dir,
            space=space_generator(target, int8_kernel),
            strategy=search_strategy(per_task),
            seed=seed,
            num_threads=target_cores(target),
        )
        runner = _runner(runner_timeout_s, rpc_spec)
        ms.tune_tasks(
            tasks=contexts,
            task_weights=weights,
            work_dir=work_dir,
            max_trials_global=per_task * len(group),
            max_trials_per_task=per_task,
            num_trials_per_iter=min(64, per_task),
            builder=builder,
            runner=runner,
            database=db,
            measure_callbacks=[
                ms.measure_callback.AddToDatabase(),
                ms.measure_callback.RemoveBuildArtifact(),
                ms.measure_callback.UpdateCostModel(),
                progress,
            ],
            task_scheduler="round-robin",
        )
        for t, b in group:
            budgets[_task_key(t)] = max(budgets.get(_task_key(t), 0), b)
        _save_budgets(work_dir, budgets)


def space_generator(target: tvm.target.Target, int8_kernel: str | None = None):
    """MetaSchedule's design space for ``target``: its backend's
    (:meth:`~pose_tuner.compile.backends.base.Backend.space_generator`). On CPU, with
    ``int8_kernel``, TVM's x86 rules with that kernel
    (:func:`pose_tuner.compile.kernels.design_space`), else TVM's defaults; on CUDA, the
    plain CUDA rules (no tensor-core rules, whose fp16 sketches do not build)."""
    return backend_for(target).space_generator(target, int8_kernel)


def search_strategy(per_task: int) -> ms.search_strategy.EvolutionarySearch:
    """Evolutionary search sized to the per-task budget.

    MetaSchedule's defaults (population 512, 4 genetic iterations) cost ~20 s of search
    per task iteration on 2 cores: fine for 1000 trials, most of the time for 8.
    """
    population = min(512, max(64, 16 * per_task))
    return ms.search_strategy.EvolutionarySearch(
        population_size=population,
        init_min_unmeasured=min(50, population // 2),
        genetic_num_iters=4 if per_task >= 32 else 2,
    )


def target_cores(target: tvm.target.Target) -> int:
    """The threads a tuning task uses: the target's ``num-cores``, else this machine's."""
    cores = target.attrs.get("num-cores") if hasattr(target, "attrs") else None
    return int(cores) if cores else (os.cpu_count() or 1)
