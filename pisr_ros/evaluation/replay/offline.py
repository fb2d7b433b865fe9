"""The replay without ROS: the Predictor on every frame of a bag's camera topic."""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from pisr_ros.evaluation.replay.handoff import FrameResult, ReplayOutput


def run_offline(bag: str | Path, topic: str, predictor, *, total: int | None = None,
                example_stamps: Iterable[int] = (), progress: bool = True) -> ReplayOutput:
    """The replay without ROS: ``predictor`` (pisr_ros.inference.Predictor) on every frame of
    ``topic``, in bag order. Latency is the predictor call (preprocess, network, post-processing,
    resize to the frame); wall_s also counts reading and decoding the bag. Results are produced
    lazily, as ``evaluate_replay`` consumes them."""
    from tqdm import tqdm

    from pisr_ros.evaluation.bags import read_image_frames

    wanted = set(example_stamps)
    out = ReplayOutput(results=(), sent_stamps=[], mode="offline",
                       description=predictor.describe() if hasattr(predictor, "describe") else "")

    def results() -> Iterator[tuple[int, FrameResult]]:
        t0 = time.perf_counter()
        frames = read_image_frames(bag, topic)
        for stamp, _, image in tqdm(frames, total=total, desc="replay (offline)", unit="frame", disable=not progress):
            out.sent_stamps.append(stamp)
            t = time.perf_counter()
            result = predictor(image, encoding="bgr")
            latency = time.perf_counter() - t
            if stamp in wanted:
                out.example_images[stamp] = image
            yield stamp, FrameResult(result.id_map, latency)
        out.wall_s = time.perf_counter() - t0

    out.results = results()
    return out
