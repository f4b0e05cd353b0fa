"""The papers' experiments as one call: ``run("degradation")``, ``run("units")``, ``run("shortcuts")``.

::

    from resnet import reproduce

    result = reproduce.run("degradation", data="fashion-mnist", budget_minutes=45, jobs=2, out="runs/degradation")
    for row in result.rows:
        print(row["net"], row["train_error"], row["test_error"], row["published_test_error"])
    print(result.verdict["text"])

Each member trains into its own run folder under ``out`` (``plain20-seed0``, ``resnet20-seed0``, ...);
calling ``run`` again with the same arguments trains only what is missing and resumes a member that
was killed, exactly. The experiment folder also gets ``table.md``/``table.csv``, ``figure.png``,
``results.json`` and ``experiment.json`` (the request and the schedule it resolved to).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet import report
from resnet.errors import ResNetError
from resnet.io import atomic_write_text
from resnet.reproduce.experiments import EXPERIMENTS, Experiment, Member, get_experiment
from resnet.reproduce.results import MemberResult, collect, plot, table_rows, verdict, write_table
from resnet.reproduce.runner import Schedule, budget_schedule, cores, member_config, read_manifest, run_members, write_manifest

__all__ = ["EXPERIMENTS", "Experiment", "ExperimentResult", "Member", "MemberResult", "get_experiment", "run"]


@dataclass
class ExperimentResult:
    experiment: str
    rows: list[dict[str, Any]]  # one per net: errors in %, mean and std over seeds, the published figure
    verdict: dict[str, Any]
    data_label: str  # what ours ran on, printed with every table
    budget_label: str
    published_source: str
    out: Path
    files: dict[str, Path] = field(default_factory=dict)
    members: list[MemberResult] = field(default_factory=list)


def run(
    experiment: str,
    *,
    data: str = "fashion-mnist",
    data_dir: str | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    budget_minutes: float | None = None,
    depths: Sequence[int] | None = None,
    seeds: int = 1,
    only: Sequence[str] | None = None,
    jobs: int = 1,
    out: str | Path | None = None,
    threads: int | None = None,
    overrides: dict[str, Any] | None = None,
) -> ExperimentResult:
    """Train the experiment's members (only those not finished yet), then write and return its table.

    ``epochs``, ``steps`` (iterations) or ``budget_minutes`` (turned into iterations by timing each
    net here, see ``runner.budget_schedule``) set how long every member trains, all members alike;
    none of them: the paper's 64k iterations. ``jobs`` members train at once in worker processes,
    each with ``threads`` (default: this machine's cores // jobs). ``overrides`` are further
    TrainConfig settings for every member (e.g. ``{"batch_size": 32}``). ``only`` trains the named
    groups alone (``["resnet"]``: the residual nets of ``degradation``).
    """
    exp = get_experiment(experiment)
    if sum(x is not None for x in (epochs, steps, budget_minutes)) > 1:
        raise ResNetError("give one of --epochs, --steps and --budget-minutes")
    for name, value in (("--epochs", epochs), ("--steps", steps), ("--jobs", jobs)):
        if value is not None and value < 1:
            raise ResNetError(f"{name} must be a positive whole number, got {value}")
    members = exp.members(depths, seeds, only)
    jobs = min(jobs, len(members))
    threads = threads or max(cores() // jobs, 1)
    out = Path(out) if out is not None else Path("runs") / f"reproduce-{exp.name}"
    if out.exists() and not out.is_dir():
        raise ResNetError(f"--out {out} is a file, not a folder")
    request = {"experiment": exp.name, "data": data, "data_dir": data_dir, "epochs": epochs, "steps": steps,
               "budget_minutes": budget_minutes, "depths": list(depths or exp.default_depths),
               "seeds": seeds, "overrides": overrides or {}}
    if only is not None:  # absent otherwise, so folders made before --only existed still match
        request["only"] = list(only)
    schedule = read_manifest(out, request)
    if schedule is None and out.is_dir() and any(out.iterdir()):
        raise ResNetError(f"--out {out} is a folder that is not empty and holds no experiment; choose a new or empty folder")
    if schedule is None:
        if budget_minutes is not None:
            schedule = budget_schedule(members, budget_minutes, jobs=jobs, threads=threads, data=data, data_dir=data_dir, overrides=overrides)
        elif steps is not None:
            schedule = Schedule(max_steps=steps, label=f"{steps} iterations")
        elif epochs is not None:
            schedule = Schedule(epochs=epochs, label=f"{epochs} epochs")
        else:
            schedule = Schedule(label="64000 iterations (the paper's schedule)")
        # Check every member's settings before anything is written.
        configs = {m.name: member_config(m, schedule, data=data, data_dir=data_dir, threads=threads, overrides=overrides) for m in members}
        out.mkdir(parents=True, exist_ok=True)
        write_manifest(out, request, schedule)
    else:
        configs = {m.name: member_config(m, schedule, data=data, data_dir=data_dir, threads=threads, overrides=overrides) for m in members}
    report.info(f"{exp.name}: {len(members)} members, {schedule.label}, {jobs} at a time x {threads} thread(s), in {out}")
    run_members(members, configs, out, jobs=jobs)
    return summarize(exp, members, out, data=data, schedule=schedule)


def summarize(exp: Experiment, members: Sequence[Member], out: Path, *, data: str, schedule: Schedule) -> ExperimentResult:
    """Table, figure, verdict and results.json from the finished members' run folders."""
    results = [collect(m, out / m.name) for m in members]
    first = json.loads((out / members[0].name / "config.json").read_text(encoding="utf-8"))
    info = first.get("dataset") or {}
    data_label = (f"{info.get('name', data)} ({info.get('train_size', '?')} train / {info.get('test_size', '?')} test images, "
                  f"{info.get('in_chans', '?')}x{'x'.join(map(str, info.get('image_size', ['?'])))})")
    hardware = first.get("hardware", "")
    rows = table_rows(results)
    outcome = verdict(exp, rows)
    title = f"{exp.name}: {exp.title}"
    notes = [f"Ours: {data_label}, {schedule.label}, batch {first.get('batch_size')}, SGD lr {first.get('lr')} / 10 at 50% and 75%"
             f"{' (32k/48k)' if first.get('milestone_steps') else ''}, {len({m.seed for m in members})} seed(s); {hardware}.",
             f"Published: {exp.published_source} -- a different dataset and budget from ours; for reference, not a target.",
             "Errors in %: training error is the last epoch's mean over its (augmented) mini-batches, as the paper's curves; "
             "test error is the test split after training.", "", outcome["text"]]
    files = dict(zip(("table_csv", "table_md"), write_table(rows, out, title=title, notes=notes)))
    files["figure"] = plot(exp, results, out / "figure.png", subtitle=f"{exp.name} on {data_label}, {schedule.label}")
    payload = {"experiment": exp.name, "data": data_label, "budget": schedule.label, "published_source": exp.published_source,
               "hardware": hardware, "rows": rows, "verdict": outcome}
    files["results"] = atomic_write_text(out / "results.json", json.dumps(payload, indent=2) + "\n")
    return ExperimentResult(experiment=exp.name, rows=rows, verdict=outcome, data_label=data_label, budget_label=schedule.label,
                            published_source=exp.published_source, out=out, files=files, members=results)
