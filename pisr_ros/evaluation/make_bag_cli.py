"""``pisr-ros make-bag``: images (a Cityscapes split, or any folder of images) -> a rosbag2 bag of
camera frames that ``ros2 bag play`` and ``pisr-ros replay-eval`` play, with the map from each
message's stamp to its image id (pisr_ros.evaluation.bags)."""
from __future__ import annotations

import argparse
import time

from pisr_ros.errors import UsageError
from pisr_ros.evaluation import bags

_EPILOG = f"""\
The bag is a rosbag2 folder: metadata.yaml, one .mcap (or .db3) file, and {bags.FRAMES_FILE}, the
stamp -> image id map that replay-eval pairs frames with labels by (also stored in metadata.yaml's
custom_data as {bags.METADATA_KEY}). Frame i is stamped start + i / rate, in the header and as the
bag time; images are bgr8 sensor_msgs/Image, or with --compressed JPEG sensor_msgs/CompressedImage
on <topic>/compressed.

examples:
  pisr-ros make-bag --images data/cityscapes/leftImg8bit/val --out bags/cityscapes_val
  pisr-ros make-bag --images data/synth/leftImg8bit/val --out bags/synth_jpeg --compressed --rate 5
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument("--images", required=True, metavar="DIR",
                        help="folder searched recursively for *_leftImg8bit.png (else any png/jpg), sorted by id")
    parser.add_argument("--out", required=True, metavar="BAG", help="bag folder to create")
    parser.add_argument("--topic", default=bags.DEFAULT_TOPIC,
                        help=f"image topic (default: {bags.DEFAULT_TOPIC}; /compressed is appended with --compressed)")
    parser.add_argument("--rate", type=float, default=10.0, metavar="HZ", help="frames per second (default: 10)")
    parser.add_argument("--format", choices=bags.FORMATS, default="mcap", help="storage format (default: mcap)")
    parser.add_argument("--compressed", action="store_true", help="JPEG sensor_msgs/CompressedImage instead of raw bgr8")
    parser.add_argument("--jpeg-quality", type=int, default=95, metavar="Q", help="JPEG quality 1..100 (default: 95)")
    parser.add_argument("--frame-id", default=bags.DEFAULT_FRAME_ID,
                        help=f"header frame_id (default: {bags.DEFAULT_FRAME_ID})")
    parser.add_argument("--start", type=float, default=bags.DEFAULT_START_NS / 1e9, metavar="SEC",
                        help=f"stamp of the first frame, seconds since the epoch (default: {bags.DEFAULT_START_NS // 10**9})")
    parser.add_argument("--force", action="store_true", help="replace --out if it is an existing bag")


def main(args: argparse.Namespace) -> int:
    from pisr_ros.image_files import find_images

    if not 1 <= args.jpeg_quality <= 100:
        raise UsageError(f"--jpeg-quality must be 1..100, got {args.jpeg_quality}")
    if not args.start >= 0:
        raise UsageError(f"--start must be >= 0 seconds, got {args.start}")
    images = find_images(args.images)
    t0 = time.perf_counter()
    frame_map = bags.write_image_bag(
        images, args.out, topic=args.topic, rate_hz=args.rate, fmt=args.format, compressed=args.compressed,
        frame_id=args.frame_id, start_ns=round(args.start * 1e9), jpeg_quality=args.jpeg_quality,
        force=args.force, progress=True,
    )
    print(f"{len(frame_map.frames)} frames -> {args.out} ({args.format}, {frame_map.topic}, {frame_map.msgtype}, "
          f"{args.rate:g} Hz, frame_id {frame_map.frame_id}) in {time.perf_counter() - t0:.1f} s; "
          f"stamp -> image id map in {frame_map.source}")
    return 0
