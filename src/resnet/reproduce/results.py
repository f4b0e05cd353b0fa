"""An experiment's outputs from its members' run folders: the table, the figure and the verdict."""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet.errors import ResNetError
from resnet.io import atomic_write, atomic_write_text
from resnet.reproduce.experiments import Experiment, Member

COLUMNS = ("net", "params", "iterations", "seeds", "train_error", "train_error_std", "test_error", "test_error_std", "published_test_error")


@dataclass
class MemberResult:
    member: Member
    params: int
    iterations: int
    steps_per_epoch: int
    history: list[dict[str, Any]]
    train_error: float  # %, the mean over the last epoch's mini-batches (augmented), as the paper's curves
    test_error: float | None  # %, the test split after training


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ResNetError(f"cannot read {path}: {exc}") from None


def collect(member: Member, run_dir: Path) -> MemberResult:
    """A finished member's figures, from its run folder; the net is rebuilt from its checkpoint to count parameters."""
    from resnet.models import model_from_checkpoint

    summary = _read_json(run_dir / "summary.json")
    config = _read_json(run_dir / "config.json")
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line]
    model, _ = model_from_checkpoint(run_dir / "checkpoints" / "last.safetensors")
    test_top1 = summary.get("test_top1")
    return MemberResult(
        member=member, params=sum(p.numel() for p in model.parameters()), iterations=int(summary["steps"]),
        steps_per_epoch=int(config["steps_per_epoch"]), history=history,
        train_error=100 * (1 - history[-1]["train_top1"]), test_error=None if test_top1 is None else 100 * (1 - test_top1),
    )


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def table_rows(results: Sequence[MemberResult]) -> list[dict[str, Any]]:
    """One row per net (seeds averaged: mean and sample standard deviation), in the experiment's order."""
    by_key: dict[str, list[MemberResult]] = {}
    for r in results:
        by_key.setdefault(r.member.key, []).append(r)
    rows = []
    for runs in by_key.values():
        m = runs[0].member
        train, train_std = _mean_std([r.train_error for r in runs])
        tests = [r.test_error for r in runs if r.test_error is not None]
        test, test_std = _mean_std(tests) if tests else (None, None)
        rows.append({
            "net": m.label, "key": m.key, "model": m.model, "model_options": m.model_options, "group": m.group, "depth": m.depth,
            "params": runs[0].params, "iterations": runs[0].iterations, "seeds": len(runs),
            "train_error": train, "train_error_std": train_std, "test_error": test, "test_error_std": test_std,
            "published_test_error": m.published,
        })
    return rows


def _pm(value: float | None, std: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" + (f" ± {std:.2f}" if std is not None else "")


def display_rows(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Column titles and text cells for printing (errors in %, mean ± std over seeds)."""
    columns = ["net", "params", "iterations", "train error %", "test error %", "published test error %"]
    cells = [[r["net"], f"{r['params']:,}", str(r["iterations"]), _pm(r["train_error"], r["train_error_std"]),
              _pm(r["test_error"], r["test_error_std"]), "-" if r["published_test_error"] is None else f"{r['published_test_error']:.2f}"]
             for r in rows]
    return columns, cells


def verdict(experiment: Experiment, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The plain-language conclusion, with the booleans it rests on."""
    if experiment.name == "degradation":
        plain = sorted((r for r in rows if r["group"] == "plain"), key=lambda r: r["depth"])
        res = sorted((r for r in rows if r["group"] == "resnet"), key=lambda r: r["depth"])
        if len(res) >= 2 and not plain:  # --only resnet: the residual half alone
            rs, rd = res[0], res[-1]
            improves = rd["train_error"] < rs["train_error"]
            text = (f"verdict: residual half {'REPRODUCED' if improves else 'NOT reproduced'} (plain nets not run): "
                    f"{rd['net']} ends {'lower' if improves else 'NOT lower'} than {rs['net']} in training error "
                    f"({rd['train_error']:.2f}% vs {rs['train_error']:.2f}%)")
            return {"text": text, "reproduced": None, "residual_deeper_trains_better": improves}
        if len(plain) < 2 or len(res) < 2:
            return {"text": "verdict: needs at least two depths of both families to compare", "reproduced": None}
        ps, pd, rs, rd = plain[0], plain[-1], res[0], res[-1]
        degrades = pd["train_error"] > ps["train_error"]
        improves = rd["train_error"] < rs["train_error"]
        both = degrades and improves
        text = (f"verdict: degradation {'REPRODUCED' if both else 'NOT reproduced'}: "
                f"{pd['net']} ends with {'higher' if degrades else 'lower or equal'} training error than {ps['net']} "
                f"({pd['train_error']:.2f}% vs {ps['train_error']:.2f}%), and {rd['net']} ends "
                f"{'lower' if improves else 'NOT lower'} than {rs['net']} ({rd['train_error']:.2f}% vs {rs['train_error']:.2f}%)")
        return {"text": text, "reproduced": both, "plain_deeper_trains_worse": degrades, "residual_deeper_trains_better": improves}
    scored = [r for r in rows if r["test_error"] is not None]
    if not scored:
        return {"text": "verdict: no test split, nothing to rank", "reproduced": None}
    ours = min(scored, key=lambda r: r["test_error"])
    paper = min(scored, key=lambda r: r["published_test_error"])
    same = ours["key"] == paper["key"]
    text = (f"verdict: lowest test error here: {ours['net']} ({ours['test_error']:.2f}%); in the paper: {paper['net'].split(' ', 1)[-1]} "
            f"({paper['published_test_error']:.2f}%): {'the same' if same else 'a different'} winner")
    return {"text": text, "reproduced": same, "best_here": ours["key"], "best_published": paper["key"]}


def write_table(rows: Sequence[dict[str, Any]], out: Path, *, title: str, notes: Sequence[str]) -> list[Path]:
    """table.csv (numbers) and table.md (as printed, with the labels that say what was run)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if r.get(k) is None else (round(r[k], 4) if isinstance(r[k], float) else r[k]) for k in COLUMNS})
    columns, cells = display_rows(rows)
    lines = [f"# {title}", "", *notes, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    return [atomic_write_text(out / "table.csv", buf.getvalue()), atomic_write_text(out / "table.md", "\n".join(lines) + "\n")]


def _curve(runs: Sequence[MemberResult], key: str) -> tuple[list[int], list[float]]:
    """Error (%) against iterations at each epoch's end, averaged over seeds."""
    length = min(len(r.history) for r in runs)
    xs, ys = [], []
    for i in range(length):
        values = [r.history[i].get(key) for r in runs]
        if any(v is None for v in values):
            continue
        xs.append(min((i + 1) * runs[0].steps_per_epoch, runs[0].iterations))
        ys.append(100 * (1 - statistics.fmean(values)))
    return xs, ys


def plot(experiment: Experiment, results: Sequence[MemberResult], path: Path, *, subtitle: str) -> Path:
    """The paper's style (Figure 6): training error thin dashed, test error bold, against iterations;
    degradation gets one panel for the plain nets and one for the residual nets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, dict[str, list[MemberResult]]] = {}
    for r in results:
        panel = r.member.group if experiment.name == "degradation" else "all"
        groups.setdefault(panel, {}).setdefault(r.member.key, []).append(r)
    titles = {"plain": "plain networks", "resnet": "ResNets", "all": experiment.title.split(" (")[0]}
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4.5), dpi=120, sharey=True, squeeze=False)
    for ax, (panel, nets) in zip(axes[0], groups.items()):
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for color, runs in zip(colors * 3, nets.values()):
            label = runs[0].member.label
            ax.plot(*_curve(runs, "train_top1"), "--", lw=0.9, color=color, marker=".", ms=3)
            xs, ys = _curve(runs, "test_top1")
            ax.plot(xs, ys, "-", lw=2.4, color=color, label=label)
        ax.set_title(titles[panel])
        ax.set_xlabel("iterations")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="dashed: training, bold: test", title_fontsize=7)
    axes[0][0].set_ylabel("error (%)")
    fig.suptitle(subtitle, fontsize=9)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
