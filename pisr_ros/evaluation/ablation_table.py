"""Markdown table of training runs' validation results, for ablations in docs/.

``python -m pisr_ros.evaluation.ablation_table RUN_DIR [RUN_DIR ...]`` reads each run's
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders of `pisr-ros train`")
    args = parser.parse_args(argv)
    header = ["run", "iterations", *COLUMNS]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for run in args.runs:
        print("| " + " | ".join(run_row(run)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
