"""`resnet reproduce EXPERIMENT`: the papers' experiments, each member an ordinary run folder under --out.

  degradation  plain-n and ResNet-n for each depth (He et al. 2015, Figure 6 and Table 6)
  units        the five residual-unit orderings at one depth (Identity Mappings, Figure 4 and Table 2)
  shortcuts    shortcut options A, B, C at one depth (He et al. 2015, Table 3)

Every member trains the same length: --epochs N, --steps N (iterations), or --budget-minutes M (each
net is timed for a few steps here and the largest iteration count that fits M minutes on --jobs lanes
is used); none of them: the paper's 64k iterations. Rerunning the same command finishes only what is
missing; a killed member resumes from its checkpoint. Published figures are printed beside ours.
"""

from __future__ import annotations

import argparse


def _depths(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected depths like 20,32,44,56, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="the papers' experiments (degradation, units, shortcuts) with published figures beside ours",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", help="degradation, units or shortcuts")
    p.add_argument("--data", default="fashion-mnist", help="fashion-mnist (default), cifar10, cifar100, an image folder or an .h5 file")
    p.add_argument("--data-dir", default=None, metavar="DIR", help="where the named dataset's files are")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=None, help="epochs per member")
    length.add_argument("--steps", type=int, default=None, metavar="N", help="iterations per member (lr / 10 at 50%% and 75%%)")
    length.add_argument("--budget-minutes", type=float, default=None, metavar="M", help="wall time for the whole experiment")
    p.add_argument("--depths", type=_depths, default=None, metavar="D,D,...",
                   help="depths (degradation default 20,32,44,56; units 110; shortcuts 32)")
    p.add_argument("--seeds", type=int, default=1, metavar="K", help="repeat each net with K seeds; the table shows mean ± std")
    p.add_argument("--only", type=lambda t: [g for g in t.split(",") if g], default=None, metavar="GROUP,...",
                   help="train these groups alone, e.g. resnet (degradation: plain, resnet; units: their names; shortcuts: A, B, C)")
    p.add_argument("--jobs", type=int, default=1, metavar="J", help="members trained at once, each with cores // J threads")
    p.add_argument("--batch-size", type=int, default=None, help="mini-batch size (default the paper's 128)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per member (default cores // jobs)")
    p.add_argument("--out", default=None, metavar="DIR", help="experiment folder (default runs/reproduce-EXPERIMENT)")
    p.add_argument("--json", action="store_true", help="print the table and verdict as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resnet import report
    from resnet.reproduce import run as run_experiment
    from resnet.reproduce.results import display_rows

    result = run_experiment(args.experiment, data=args.data, data_dir=args.data_dir, epochs=args.epochs, steps=args.steps,
                            budget_minutes=args.budget_minutes, depths=args.depths, seeds=args.seeds, only=args.only, jobs=args.jobs,
                            out=args.out, threads=args.threads,
                            overrides={"batch_size": args.batch_size} if args.batch_size else None)
    if args.json:
        report.result_json({"experiment": result.experiment, "data": result.data_label, "budget": result.budget_label,
                            "published_source": result.published_source, "rows": result.rows, "verdict": result.verdict})
        return 0
    columns, cells = display_rows(result.rows)
    report.table(f"{result.experiment} on {result.data_label}, {result.budget_label}; published: {result.published_source}",
                 columns, cells)
    report.info(f"table: {result.files['table_md']}, figure: {result.files['figure']}")
    report.result(result.verdict["text"])
    return 0
