"""Markdown table of training runs' validation results, for ablations in docs/.

``pisr-ros ablation-table RUN_DIR [RUN_DIR ...]`` reads each run's
``val_metrics.json`` (written by ``pisr-ros train``). Losses are left out: runs with PISR also
carry the intermediate heads' terms, so their totals do not compare.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COLUMNS = ("PQ", "SQ", "RQ", "PQ things", "PQ stuff", "mIoU")


def run_row(run: Path) -> list[str]:
    metrics_file = run / "val_metrics.json"
    if not metrics_file.is_file():
        raise SystemExit(f"{metrics_file}: missing; it is written when `pisr-ros train` ends")
    m = json.loads(metrics_file.read_text())

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}"

    values = [m["All"]["pq"], m["All"]["sq"], m["All"]["rq"], m["Things"]["pq"], m["Stuff"]["pq"],
              m.get("semantic", {}).get("averageScoreClasses")]
    return [run.name, str(m.get("iteration", "?"))] + [pct(v) for v in values]


def group_rows(runs: list[Path]) -> list[list[str]]:
    """Runs named ``<variant>_s<seed>`` grouped by variant: per column the mean and, with more
    than one seed, the range (min-max) across seeds."""
    import re

    groups: dict[str, list[list[float]]] = {}
    for run in runs:
        variant = re.sub(r"_s\d+$", "", run.name)
        m = json.loads((run / "val_metrics.json").read_text())
        values = [m["All"]["pq"], m["All"]["sq"], m["All"]["rq"], m["Things"]["pq"], m["Stuff"]["pq"],
                  m.get("semantic", {}).get("averageScoreClasses")]
        groups.setdefault(variant, []).append([100 * v for v in values])
    rows = []
    for variant, seeds in groups.items():
        cells = []
        for col in zip(*seeds):
            mean = sum(col) / len(col)
            cells.append(f"{mean:.1f}" + (f" ({min(col):.1f}-{max(col):.1f})" if len(col) > 1 else ""))
        rows.append([variant, str(len(seeds))] + cells)
    return rows


def plot_losses(runs: list[Path], out: Path, window: int = 25) -> None:
    """Semantic and center losses of the final heads over iterations, one line per run."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for run in runs:
        with open(run / "log.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        it = np.array([int(r["iteration"]) for r in rows])
        for ax, key in zip(axes, ("semantic", "center")):
            v = np.array([float(r[key]) for r in rows])
            smooth = np.convolve(v, np.ones(window) / window, mode="valid")
            ax.plot(it[window - 1:], smooth, label=run.name)
    for ax, key in zip(axes, ("semantic (hard-pixel CE, top 20 %)", "center (MSE x 200)")):
        ax.set_title(f"final heads: {key}, mean of {window} it.")
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", type=Path, help="run folders of `pisr-ros train`")
    parser.add_argument("--plot", type=Path, metavar="PNG", help="also plot the runs' training losses")
    parser.add_argument("--group", action="store_true",
                        help="also a table of runs named VARIANT_sSEED grouped by variant: mean (range)")


def main(args: argparse.Namespace) -> int:
    if args.plot:
        plot_losses(args.runs, args.plot)
    header = ["run", "iterations", *COLUMNS]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for run in args.runs:
        print("| " + " | ".join(run_row(run)) + " |")
    if args.group:
        header = ["variant", "seeds", *COLUMNS]
        print("\n| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in group_rows(args.runs):
            print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    from pisr_ros import cli

    sys.exit(cli.main(["ablation-table", *sys.argv[1:]]))
