"""``pisr-ros``: the project's command line.

Each subcommand lives next to the code it drives, in a module with ``add_arguments(parser)``
and ``main(args) -> int``; this file only lists them, so ``pisr-ros --help`` stays fast (the
modules, and torch, are imported only for the command that runs).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from pisr_ros.errors import UsageError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("pisr_ros.data.synth_cli", "generate synthetic street scenes in the Cityscapes layout"),
    "evaluate": ("pisr_ros.evaluation.evaluate_cli", "score panoptic (PQ/SQ/RQ) and semantic (mIoU) predictions"),
    "train": ("pisr_ros.training.train_cli", "train a model spec on data in the Cityscapes layout"),
    "predict": ("pisr_ros.inference.predict_cli", "panoptic predictions for a folder of images, in the Cityscapes panoptic format"),
    "export": ("pisr_ros.inference.export_cli", "export a checkpoint's network to ONNX, checked against PyTorch"),
    "build-engine": ("pisr_ros.inference.build_engine_cli", "build (or reuse) a cached TensorRT engine from an ONNX file"),
    "bench": ("pisr_ros.tools.bench_predictor", "per-stage latency of the Predictor on several backends, side by side"),
    "make-bag": ("pisr_ros.evaluation.make_bag_cli", "write images (e.g. a Cityscapes split) to a rosbag2 bag of camera frames, with the stamp -> image id map"),
    "replay-eval": ("pisr_ros.tools.replay_eval", "replay a bag through the model (offline) or the panoptic node (live) and score it against Cityscapes labels"),
    "bench-node": ("pisr_ros.ros.bench_node", "panoptic_node end to end in its own process: frames/s, latency, drops"),
    "bench-evaluator": ("pisr_ros.tools.bench_evaluator", "pisr-ros evaluate, cityscapesscripts and hotcoco side by side, whole process each, on generated data"),
    "tune-postprocess": ("pisr_ros.inference.tune_postprocess_cli", "choose a model's post-processing settings by PQ on a validation split and store them in the model file"),
    "quantize": ("pisr_ros.inference.quantize_cli", "a statically quantized (int8) ONNX of a model, checked against fp32 (id maps, PQ, latency)"),
    "bench-grid": ("pisr_ros.tools.bench_grid", "occupancy-grid update time on one 1024x2048 label image, with and without odometry"),
    "drive-demo": ("pisr_ros.tools.drive_demo", "a synthetic drive through the occupancy grid, drawn as one picture (docs/occupancy_grid_drive.png)"),
    "ablation-table": ("pisr_ros.tools.ablation_table", "the ablation table (and loss plot) of `pisr-ros train` run folders"),
    "train-ranking": ("pisr_ros.training.train_ranking_cli", "OANet's spatial ranking module (merge: ranking) on top of a trained YOLO-Panoptic checkpoint, written into a copy of it"),
    "merge-ablation": ("pisr_ros.tools.merge_ablation", "YOLO-Panoptic's heuristic merge against the ranking merge on the same instances: PQ on all frames and on the frames where masks overlap"),
    "import-darknet": ("pisr_ros.models.import_darknet_cli", "pjreddie's Darknet weights (yolov3.weights, darknet53.conv.74) as a YOLO-Panoptic checkpoint to train from"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pisr-ros",
        description="Real-time panoptic segmentation for ROS 2: data, training, evaluation and tools.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv or ["--help"])
        return 2
    module_name, help_text = COMMANDS[argv[0]]
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(prog=f"pisr-ros {argv[0]}", description=help_text)
    module.add_arguments(sub)
    args = sub.parse_args(argv[1:])
    try:
        return int(module.main(args) or 0)
    except UsageError as exc:
        print(f"pisr-ros {argv[0]}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
