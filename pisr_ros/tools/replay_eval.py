"""``pisr-ros replay-eval``: play a bag of camera frames through the panoptic model (offline: the
Predictor on every frame, no ROS) or through a running panoptic node (live), pair what comes back
with Cityscapes-style labels by stamp, and write a report: PQ/SQ/RQ (All, Things, Stuff, per
class), mIoU, frames sent/received/dropped/scored, latency and throughput, plots and examples."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from pisr_ros.errors import UsageError
from pisr_ros.evaluation import bags, replay
from pisr_ros.inference.model_files import DEFAULT_MODEL, find_model

_EPILOG = f"""\
The bag needs the camera's images on <camera>/image_raw (sensor_msgs/Image) or
<camera>/image_raw/compressed (CompressedImage), and a frames map (header stamp -> Cityscapes
image id): {bags.FRAMES_FILE} in the bag folder, or its metadata's custom_data, both written by
`pisr-ros make-bag`; or --frames FILE. --gt is the Cityscapes root of those images: it needs
gtFine/cityscapes_panoptic_<split>.json (+ PNG folder) and gtFine/<split>/<city>/*_gtFine_labelIds.png.

Writes into --out: report.md, metrics.json, predictions/ (Cityscapes panoptic format), plots/
(per-class PQ, latency histogram, PQ over the sequence) and examples/ (image | truth | prediction).

examples:
  pisr-ros make-bag --images data/cityscapes/leftImg8bit/val --out bags/val
  pisr-ros replay-eval --offline --bag bags/val --gt data/cityscapes --camera /front --out out/replay
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pisr_ros.families.flags import add_setting_flags

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument("--bag", required=True, metavar="BAG", help="rosbag2 folder (or its .mcap/.db3 file)")
    parser.add_argument("--gt", required=True, metavar="ROOT", help="Cityscapes-layout root with the labels (gtFine/)")
    parser.add_argument("--camera", default="/front", metavar="NS",
                        help="camera namespace: images on NS/image_raw or NS/image_raw/compressed (default: /front)")
    parser.add_argument("--transport", choices=("auto", "raw", "compressed"), default="auto",
                        help="which image topic to play (default: auto, raw when the bag has both)")
    parser.add_argument("--split", default=None,
                        help="split of the labels (default: the one the frames map records, else val)")
    parser.add_argument("--frames", default=None, metavar="JSON",
                        help=f"frames map to use instead of the bag's own ({bags.FRAMES_FILE})")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--offline", action="store_true",
                      help="the Predictor on every frame, no ROS: the reference (the default)")
    mode.add_argument("--live", action="store_true",
                      help="through panoptic_node over ROS 2: started here with --model/--backend/... "
                           "(reliable QoS), or the running one with --attach")
    parser.add_argument("--attach", action="store_true",
                        help="live: use the panoptic_node already running in --camera instead of starting one")
    parser.add_argument("--rate", default="1.0", metavar="R|max",
                        help="live: playback speed, a factor of the recorded rate, or max (default: 1.0); "
                             "offline plays every frame as fast as the model takes them")
    parser.add_argument("--out", default="out/replay_eval", metavar="DIR", help="report folder (default: out/replay_eval)")
    parser.add_argument("--overlays", type=int, default=0, metavar="N",
                        help="live: also save the node's first N overlays in --out/overlays (default: 0)")
    parser.add_argument("--examples", type=int, default=3, metavar="N",
                        help="image | ground truth | prediction pictures (default: 3)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help=f"processes scoring images (default: all CPUs, here {os.cpu_count()})")
    model = parser.add_argument_group("model (offline, and live when replay-eval starts the node)")
    model.add_argument("--model", default=DEFAULT_MODEL, metavar="M",
                       help=f"checkpoint (.pt) or exported .onnx (default: {DEFAULT_MODEL})")
    model.add_argument("--backend", default="auto", metavar="B", help="auto, torch, onnxruntime or tensorrt (default: auto)")
    model.add_argument("--device", default="cpu", metavar="D", help="cpu, cuda or cuda:N (default: cpu)")
    model.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads (default: all cores)")
    add_setting_flags(parser, "post-processing (default: the model's tuned value, else the device's "
                              "default: the same as panoptic_node and `pisr-ros predict`)")


def parse_rate(text: str) -> float | None:
    """Playback factor, or None for as fast as possible ("max")."""
    if text == "max":
        return None
    try:
        rate = float(text)
    except ValueError:
        raise UsageError(f"--rate must be a positive factor (1.0 = as recorded) or max, got {text!r}") from None
    if not rate > 0:
        raise UsageError(f"--rate must be positive, got {text}")
    return rate


def given_settings(args: argparse.Namespace) -> dict:
    """The post-processing flags given, checked against the model's family (not against a
    running node's: --attach takes the node as it is)."""
    from pisr_ros.families.flags import given_settings as given
    from pisr_ros.inference.model_files import read_model_info

    return given(args, read_model_info(find_model(args.model)).family.settings_class)


def node_params(args: argparse.Namespace, settings: dict) -> dict[str, str]:
    """The parameters of the panoptic_node replay-eval starts (``-p name:=value``): every given
    setting, 0 and false included."""
    params = {"model": str(find_model(args.model)), "backend": args.backend, "device": args.device,
              "threads": str(args.threads or 0)}
    for name, value in settings.items():
        params[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return params


def run_live(args: argparse.Namespace, topic: str, msgtype: str, count: int) -> replay.ReplayOutput:
    """The bag through panoptic_node over ROS 2 (pisr_ros.ros.replay_live; rclpy is imported
    only here, so that the offline path needs no ROS)."""
    from pisr_ros.ros.replay_live import run_live as play

    params = {}
    if not args.attach:
        params = node_params(args, given_settings(args))
    elif args.model != DEFAULT_MODEL or given_settings(args):
        raise UsageError("--attach uses the running node's model and settings; leave out --model and the "
                         "post-processing flags (set them on the node with `ros2 param set`)")
    return play(args.bag, topic, msgtype, args.camera, rate=parse_rate(args.rate), attach=args.attach,
                node_params=params, total=count, overlays=args.overlays,
                overlays_dir=Path(args.out) / "overlays")


def main(args: argparse.Namespace) -> int:
    rate = parse_rate(args.rate)
    if args.overlays < 0 or (args.overlays and not args.live):
        raise UsageError("--overlays N (N >= 0) is for --live: the overlays are the node's")
    if args.examples < 0:
        raise UsageError(f"--examples must be >= 0, got {args.examples}")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    given = given_settings(args)

    topic, msgtype, count = bags.camera_image_topic(args.bag, args.camera, args.transport)
    frame_map = bags.read_frame_map(args.bag, args.frames)
    split = args.split or frame_map.split or "val"
    gt = replay.load_ground_truth(args.gt, split)
    # Every stamp of the bag, before any inference: are they the map's, and do their images have labels?
    stamps = [stamp for stamp, *_ in bags.read_raw_messages(args.bag, topic)]
    labelled = [s for s in stamps if s in frame_map.by_stamp]
    if not labelled:
        raise UsageError(
            f"none of the {len(stamps)} frames on {topic} has a stamp in the frames map {frame_map.source}: "
            "the map belongs to another bag (stamps are header stamps, in ns)")
    gt.check_labelled([frame_map.by_stamp[s] for s in labelled], f"the bag ({frame_map.source})")
    if len(labelled) < len(stamps):
        print(f"note: {len(stamps) - len(labelled)} of {len(stamps)} frames have no label in the frames map; "
              "they are played but not scored")
    info = {"bag": str(args.bag), "topic": f"{topic} ({msgtype})", "gt": str(args.gt), "split": split}

    if args.live:
        output = run_live(args, topic, msgtype, count)
        info["rate"] = "max" if rate is None else f"{rate:g}x"
    else:
        from pisr_ros import settings
        from pisr_ros.inference.model_files import read_model_info
        from pisr_ros.inference.predictor import Predictor, model_settings

        model_info = read_model_info(find_model(args.model))
        cfg = model_settings(model_info, args.device, **given)
        predictor = Predictor.from_file(str(model_info.path), backend=args.backend, device=args.device,
                                        threads=args.threads, postprocess=cfg)
        info["postprocess"] = ", ".join(f"{k} {v}" for k, v in settings.values(cfg).items())
        example_stamps = replay.pick_examples(labelled, args.examples)
        output = replay.run_offline(args.bag, topic, predictor, total=count, example_stamps=example_stamps)
    doc = replay.evaluate_replay(output, frame_map, gt, args.out, info=info, examples=args.examples,
                                 workers=args.workers)
    c, pan, lat = doc["counts"], doc["panoptic"], doc["latency"]
    fps = doc["throughput_fps"]
    print(f"{output.mode}: {c['sent']} frames sent, {c['received']} received, {c['dropped']} dropped; "
          f"{c['scored']} ground-truth frames scored, {c['dropped_labelled']} dropped")
    print(f"PQ {replay.pct(pan['All']['pq'])}  SQ {replay.pct(pan['All']['sq'])}  RQ {replay.pct(pan['All']['rq'])}  "
          f"(Things PQ {replay.pct(pan['Things']['pq'])}, Stuff PQ {replay.pct(pan['Stuff']['pq'])})  "
          f"mIoU {replay.pct(doc['semantic']['averageScoreClasses'])}")
    if lat["n"]:
        print(f"latency p50 {1000 * lat['p50_s']:.1f} ms, p90 {1000 * lat['p90_s']:.1f} ms, max {1000 * lat['max_s']:.1f} ms"
              + (f"; {fps:.2f} frames/s" if fps else ""))
    print(f"report: {Path(args.out) / replay.REPORT}")
    return 0
