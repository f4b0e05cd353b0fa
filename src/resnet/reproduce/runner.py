"""Running an experiment's members: their configs, the time budget, resuming, and parallel processes.

Every member is an ordinary run folder under the experiment's ``--out``, trained through the public
training API (``resolve_config`` + ``run_training``). A member is *done* when its summary.json exists,
*partial* when it has a checkpoint (it resumes, bit-exact), and *new* otherwise, so rerunning the same
command after a kill finishes only what is missing. ``experiment.json`` records the request and the
schedule it resolved to (a budget's iteration count is measured once, then reused by every rerun).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from resnet import report
from resnet.errors import ResNetError
from resnet.io import atomic_write_text
from resnet.reproduce.experiments import Member
from resnet.train import TrainConfig, resolve_config, run_training

MANIFEST = "experiment.json"
# The paper's CIFAR schedule: 64k iterations, lr divided by 10 at 32k and 48k (He et al. 2015, 4.2).
PAPER_STEPS, PAPER_MILESTONES = 64000, [32000, 48000]
# Of a time budget, the share planned for training and evaluation; the rest covers start-up, data
# loading, checkpoints and the slack between members finishing on different lanes.
BUDGET_SHARE = 0.85
# A forward pass costs about a third of a training step (forward + backward of twice the work).
FORWARD_SHARE = 1 / 3
# Settings that decide what a member computes: a folder trained with others is not this member.
IDENTITY_KEYS = ("model", "model_options", "data", "seed", "epochs", "max_steps", "batch_size", "lr", "milestone_steps", "milestones")


@dataclass(frozen=True)
class Schedule:
    """How long each member trains: ``epochs``, or ``max_steps`` iterations, and how that was decided."""

    epochs: int | None = None
    max_steps: int | None = None
    label: str = ""

    def overrides(self) -> dict[str, Any]:
        if self.max_steps is None and self.epochs is None:  # the paper's own schedule
            return {"max_steps": PAPER_STEPS, "milestone_steps": PAPER_MILESTONES, "epochs": 1}
        if self.max_steps is not None:  # lr / 10 at 50% and 75% of the iterations, as the paper's 32k/48k of 64k
            return {"max_steps": self.max_steps, "milestone_steps": None, "milestones": [0.5, 0.75], "epochs": 1}
        return {"epochs": self.epochs, "max_steps": None, "milestone_steps": None, "milestones": [0.5, 0.75]}


def cores() -> int:
    """CPU cores this process may use (its affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def member_config(member: Member, schedule: Schedule, *, data: str, data_dir: str | None, threads: int | None,
                  overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The member's training settings: the paper's CIFAR recipe (SGD 0.1, momentum 0.9, wd 1e-4, batch 128,
    lr / 10 twice, crop + flip) on ``data``, without a validation carve (the figures use the test split)."""
    values: dict[str, Any] = {
        "model": member.model, "model_options": dict(member.model_options), "seed": member.seed,
        "data": data, "data_dir": data_dir, "val_size": 0, "threads": threads, **schedule.overrides(),
    }
    values.update(overrides or {})
    return resolve_config(values, recipe="paper-cifar")


def member_state(run_dir: Path) -> str:
    """"done", "partial" (a checkpoint to resume from) or "new"."""
    if (run_dir / "summary.json").is_file():
        return "done"
    if (run_dir / "checkpoints" / "last.state.pt").is_file():
        return "partial"
    return "new"


def check_member_folder(run_dir: Path, config: TrainConfig) -> None:
    """Refuse to resume or reuse a folder that was trained with other settings."""
    path = run_dir / "config.json"
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise ResNetError(f"{path} is damaged; delete the folder {run_dir} to retrain that member") from None
    wanted = config.to_dict()
    differ = [key for key in IDENTITY_KEYS if saved.get(key) != wanted.get(key)]
    if differ:
        raise ResNetError(f"{run_dir} was trained with other settings ({', '.join(differ)}); choose another --out")


# --------------------------------------------------------------------------------------------
# The budget: minutes -> iterations


def _time_steps(model_name: str, options: dict[str, Any], in_chans: int, size: tuple[int, int], num_classes: int,
                batch: int, device: torch.device, amp: bool | None, steps: int = 3) -> float:
    """Seconds per training step of one net on random images (after two warm-up steps)."""
    from resnet.device import native_bf16
    from resnet.models import create_model

    model = create_model(model_name, num_classes=num_classes, in_chans=in_chans, **options).to(device)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, in_chans, *size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (batch,), device=device)
    if amp is None and device.type == "cpu":  # what the member's training will choose (train/precision.py)
        from resnet.train.precision import choose_cpu_amp

        use_amp = choose_cpu_amp(model, (in_chans, *size), channels_last=True)[0] is not None
    else:
        use_amp = native_bf16(device) if amp is None else amp

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def budget_schedule(members: Sequence[Member], minutes: float, *, jobs: int, threads: int, data: str,
                    data_dir: str | None, overrides: dict[str, Any] | None = None) -> Schedule:
    """Turn ``minutes`` of wall time into one iteration count for every member.

    Each distinct net is timed for a few training steps on this machine with the threads a member
    gets; a member's cost is iterations x its step time plus its evaluations (the test split after
    every epoch, at a third of a step per batch). Members share ``jobs`` lanes, so the iterations are
    the largest count whose total cost over the lanes, and whose dearest single member, fit in
    85% of the budget (the rest is start-up, data loading and checkpoints), rounded down to whole
    epochs when there is more than one.
    """
    from resnet.data import available_splits, load
    from resnet.device import resolve_device

    if not math.isfinite(minutes) or minutes <= 0:
        raise ResNetError(f"--budget-minutes must be a positive number, got {minutes}")
    base = member_config(members[0], Schedule(epochs=1), data=data, data_dir=data_dir, threads=threads, overrides=overrides)
    train = load(base.data, "train", data_dir=base.data_dir)
    test_size = len(load(base.data, "test", data_dir=base.data_dir)) if "test" in available_splits(base.data, data_dir=base.data_dir) else 0
    steps_per_epoch = max(len(train) // base.batch_size, 1)
    device = resolve_device(base.device)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        seconds: dict[str, float] = {}
        for m in members:
            if m.key not in seconds:
                seconds[m.key] = _time_steps(m.model, m.model_options, train.in_chans, train.image_size, train.num_classes,
                                             base.batch_size, device, base.amp)
    finally:
        torch.set_num_threads(before)
    per_step = [seconds[m.key] for m in members]
    # Evaluation per training step: test batches of eval_batch_size images, once every steps_per_epoch steps.
    eval_share = FORWARD_SHARE * (test_size / base.batch_size) / steps_per_epoch
    lanes = min(jobs, len(members))
    cost_per_iteration = max(sum(per_step) / lanes, max(per_step)) * (1 + eval_share)
    steps = int(minutes * 60 * BUDGET_SHARE / cost_per_iteration)
    timed = ", ".join(f"{key} {s * 1000:.0f} ms" for key, s in seconds.items())
    if steps < 1:
        raise ResNetError(f"--budget-minutes {minutes:g} is too short for one iteration of every member "
                          f"(measured per step: {timed}); give at least {math.ceil(cost_per_iteration / 60 / BUDGET_SHARE * 10)} minutes")
    if steps > steps_per_epoch:
        # Whole epochs: the last row's training error is then a full epoch's mean, like the others.
        steps -= steps % steps_per_epoch
    epochs = steps / steps_per_epoch
    report.info(f"budget {minutes:g} min on {lanes} lane(s) x {threads} thread(s): measured per training step {timed}; "
                f"{steps} iterations per member ({epochs:.2f} epochs of {steps_per_epoch} steps)")
    return Schedule(max_steps=steps, label=f"{steps} iterations ({epochs:.2f} epochs), from a {minutes:g}-minute budget with --jobs {jobs}")


# --------------------------------------------------------------------------------------------
# Running members


def train_member(config: TrainConfig, run_dir: Path, state: str, log_path: Path) -> None:
    """Train (or finish) one member in this process, its log also written to ``log_path``
    (a worker process has no terminal of its own to share)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger = logging.getLogger("resnet")
    level = logger.level
    if level == logging.NOTSET:  # unconfigured (a worker, a library caller): keep the training log; -q stays quiet
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        run_training(config, out=run_dir, resume=state == "partial", overwrite=state == "new")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


def _worker(config_values: dict[str, Any], run_dir: str, state: str, log_path: str) -> None:
    """A worker process's body: exit status 0 done, 2 a ResNetError (its line is the log's last), 130 stopped."""
    try:
        train_member(TrainConfig(**config_values), Path(run_dir), state, Path(log_path))
    except ResNetError as exc:
        _append(Path(log_path), f"error: {exc}")
        raise SystemExit(2) from None
    except KeyboardInterrupt:  # a stop signal: the member saved its checkpoint
        raise SystemExit(130) from None


def _append(path: Path, line: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def _last_error(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return "no log"
    errors = [line for line in lines if line.startswith("error: ")]
    return errors[-1][len("error: "):] if errors else (lines[-1] if lines else "no log")


def run_members(members: Sequence[Member], configs: dict[str, TrainConfig], out: Path, *, jobs: int) -> None:
    """Train every member that is not done: in this process (``jobs`` 1) or in up to ``jobs`` worker processes."""
    todo = []
    for m in members:
        run_dir = out / m.name
        state = member_state(run_dir)
        check_member_folder(run_dir, configs[m.name])
        if state == "done":
            report.info(f"{m.name}: done already ({run_dir})")
            continue
        report.info(f"{m.name}: {'resuming from its checkpoint' if state == 'partial' else 'training'} ({run_dir})")
        todo.append((m, state))
    logs = out / "logs"
    if jobs <= 1:
        for m, state in todo:
            train_member(configs[m.name], out / m.name, state, logs / f"{m.name}.log")
        return
    # Dearest first, so the lanes finish close together.
    todo.sort(key=lambda item: -item[0].depth)
    _run_parallel(todo, configs, out, jobs)


def _run_parallel(todo: list[tuple[Member, str]], configs: dict[str, TrainConfig], out: Path, jobs: int) -> None:
    """One process per member, ``jobs`` at a time. A failure, or a stop of this process, sends the running
    members SIGTERM: each finishes its step, saves its checkpoint and exits, ready to resume."""
    ctx = get_context("spawn")  # forking a process that already runs OpenMP threads can deadlock
    queue = list(todo)
    running: dict[Any, Member] = {}
    previous = _stop_on_sigterm()
    try:
        while queue or running:
            while queue and len(running) < jobs:
                m, state = queue.pop(0)
                log = out / "logs" / f"{m.name}.log"
                log.parent.mkdir(parents=True, exist_ok=True)
                proc = ctx.Process(target=_worker, args=(configs[m.name].to_dict(), str(out / m.name), state, str(log)),
                                   name=f"reproduce-{m.name}")
                proc.start()
                running[proc] = m
            for proc in [p for p in running if not p.is_alive()]:
                m = running.pop(proc)
                proc.join()
                if proc.exitcode == 0:
                    report.info(f"{m.name}: finished")
                    continue
                if proc.exitcode == 130:
                    raise KeyboardInterrupt
                raise ResNetError(f"member {m.name} failed ({_last_error(out / 'logs' / f'{m.name}.log')}); "
                                  f"log: {out / 'logs' / f'{m.name}.log'}; finished members are kept, rerun to continue")
            time.sleep(0.2)
    finally:
        for proc in running:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: the member saves and stops (fit's graceful stop)
        for proc in running:
            proc.join()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stop_on_sigterm() -> Any:
    """SIGTERM to this process stops it like Ctrl-C, so the members it started are stopped and saved too."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def write_manifest(out: Path, request: dict[str, Any], schedule: Schedule) -> None:
    atomic_write_text(out / MANIFEST, json.dumps({"request": request, "schedule": schedule.__dict__}, indent=2) + "\n")


def read_manifest(out: Path, request: dict[str, Any]) -> Schedule | None:
    """The schedule an earlier run of this same request resolved to; None for a new experiment folder."""
    path = out / MANIFEST
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise ResNetError(f"{path} is damaged; delete it (finished members are kept) or choose another --out") from None
    if saved.get("request") != request:
        old = saved.get("request") or {}
        differ = sorted(k for k in set(old) | set(request) if old.get(k) != request.get(k))
        raise ResNetError(f"--out {out} holds an experiment run with other arguments ({', '.join(differ)}); "
                          "rerun it with the same arguments to finish it, or choose another --out")
    return Schedule(**saved["schedule"])
