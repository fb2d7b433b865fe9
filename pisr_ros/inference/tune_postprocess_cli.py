"""``pisr-ros tune-postprocess``: choose a model's post-processing settings on a validation
split by PQ, and store them in the model file (pisr_ros.inference.tune_postprocess)."""
from __future__ import annotations

import argparse
import math
import os

from pisr_ros.errors import UsageError

_EPILOG = """\
The network runs once per frame; each setting then re-runs only the post-processing and scores
PQ in memory, exactly as `pisr-ros evaluate` would. The search is coordinate descent from the
model's current settings (stored ones, else the device's defaults): each setting in turn takes
its best candidate with the others held, for --passes rounds.

The chosen values are written into --model for the device type tuned on (a checkpoint's
"postprocess" entry, an ONNX file's "pisr_ros.postprocess" metadata); the node, `predict` and
`replay-eval` then use them unless told otherwise. Tune on a split that is not the one you
report scores on, or those scores are tuned to it.

examples:
  pisr-ros synth --out data/synth_tune --split val --num 50 --size 1024x2048 --seed 3
  pisr-ros tune-postprocess --model runs/base/final.pt --data data/synth_tune --split val
  pisr-ros tune-postprocess --model m.onnx --data DIR --try center_threshold=0.2,0.3,0.4 --try nms_kernel=3,5
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pisr_ros.inference.backends import BACKENDS
    from pisr_ros.inference.tune_postprocess import CANDIDATES, OBJECTIVES

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument("--model", required=True, metavar="M", help="checkpoint (.pt) or exported ONNX (.onnx)")
    parser.add_argument("--data", required=True, metavar="ROOT",
                        help="Cityscapes-layout root with the split's images and panoptic ground truth")
    parser.add_argument("--split", default="val", help="split to tune on (default: val)")
    parser.add_argument("--frames", type=int, default=None, metavar="N", help="use the first N frames (default: all)")
    parser.add_argument("--backend", default="auto", choices=("auto", *BACKENDS), help="inference backend (default: auto)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N: the settings are stored for its type "
                        "(default: cpu)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help=f"CPU threads for the network (default: all cores, here {os.cpu_count()})")
    parser.add_argument("--objective", default="pq", choices=OBJECTIVES,
                        help="what is maximised: PQ of all classes, or of things (default: pq)")
    parser.add_argument("--passes", type=int, default=2, metavar="P", help="coordinate-descent rounds (default: 2)")
    defaults = "; ".join(f"{k} {','.join(map(str, v))}" for k, v in CANDIDATES.items())
    parser.add_argument("--try", dest="tries", action="append", default=[], metavar="NAME=V1,V2,...",
                        help=f"candidate values of one setting, replacing its defaults ({defaults})")
    parser.add_argument("--no-store", action="store_true", help="only print; leave --model unchanged")


def parse_tries(tries: list[str], settings_class) -> dict[str, tuple]:
    from pisr_ros import settings

    table = {s.name: s for s in settings.table(settings_class)}
    out = {}
    for text in tries:
        name, sep, values = text.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in table or not values.strip():
            raise UsageError(f"--try {text!r}: expected NAME=V1,V2,... with NAME one of {', '.join(table)}")
        kind = table[name].type
        parsed = []
        for v in values.split(","):
            try:
                value = kind(float(v)) if kind is int and float(v).is_integer() else kind(v)
            except ValueError:
                raise UsageError(f"--try {text!r}: {v!r} is not a {kind.__name__}") from None
            problem = table[name].problem(value)
            if problem:
                raise UsageError(f"--try {text!r}: {problem}")
            parsed.append(value)
        out[name] = tuple(parsed)
    return out


def _pct(v: float) -> str:
    return "  -  " if v is None or math.isnan(v) else f"{100 * v:5.1f}"


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pisr_ros import settings
    from pisr_ros.inference.model_files import read_model_info
    from pisr_ros.arguments import resolve_device
    from pisr_ros.inference.predictor import Predictor
    from pisr_ros.inference.tune_postprocess import Sweep, candidates, load_frames, per_class_counts, store_settings

    if args.frames is not None and args.frames < 1:
        raise UsageError(f"--frames must be at least 1, got {args.frames}")
    if args.passes < 1:
        raise UsageError(f"--passes must be at least 1, got {args.passes}")
    device = resolve_device(args.device)
    info = read_model_info(args.model)
    tries = parse_tries(args.tries, info.family.settings_class)
    predictor = Predictor.from_file(str(info.path), backend=args.backend, device=device, threads=args.threads,
                                    keep_confidence=False)
    frames, categories = load_frames(predictor, args.data, args.split, args.frames,
                                     progress=lambda ids: tqdm(ids, desc="network", unit="frame"))
    grid = candidates(predictor.postprocess, tries)
    sweep = Sweep(predictor, frames, categories, args.objective)
    names = list(grid)
    print(f"{predictor.describe()}; {len(frames)} frames of {args.data} ({args.split}); "
          f"maximising {args.objective}")
    header = " | ".join(f"{n:>16}" for n in names) + " |    PQ | PQ_th | PQ_st"
    print(header)
    print("-" * len(header))
    # At most every candidate of every setting, once per pass, plus the start.
    bar = tqdm(total=1 + args.passes * sum(len(v) for v in grid.values()), desc="settings", unit="setting",
               leave=False)

    def on_trial(trial, new):
        bar.update()
        if new:
            r = trial.results
            bar.write(" | ".join(f"{trial.values[n]!s:>16}" for n in names)
                      + f" | {_pct(r['All']['pq'])} | {_pct(r['Things']['pq'])} | {_pct(r['Stuff']['pq'])}")

    best = sweep.run(grid, args.passes, on_trial)  # its first trial is the start
    bar.close()
    start = sweep.evaluate(sweep.start)
    # Only what was swept is stored: a setting left alone keeps following the device's default.
    chosen = {n: best.values[n] for n in grid}
    print(f"\n{len(sweep.trials)} settings tried. Start: PQ {_pct(start.results['All']['pq'])}, things "
          f"{_pct(start.results['Things']['pq'])}; chosen: PQ {_pct(best.results['All']['pq'])}, things "
          f"{_pct(best.results['Things']['pq'])}")
    print("chosen: " + ", ".join(f"{k}={v}" for k, v in chosen.items()))
    print("\nthings with the chosen settings (start in brackets):")
    print(f"{'class':>14} |    PQ |    TP |    FP |    FN")
    before = {row[0]: row for row in per_class_counts(start, categories)}
    for name, is_thing, pq_class, tp, fp, fn in per_class_counts(best, categories):
        if is_thing:
            b = before[name]
            print(f"{name:>14} | {_pct(pq_class)} | {tp:5d} | {fp:5d} | {fn:5d}   ({_pct(b[2])} | {b[3]} | {b[4]} | {b[5]})")
    if args.no_store:
        print("\n--no-store: model file unchanged")
    else:
        kind = settings.device_type(device)
        store_settings(info.path, kind, chosen)
        print(f"\nstored in {info.path} for {kind}: node, predict and replay-eval use these unless told otherwise")
    return 0
