"""Replay evaluation: frames of a bag through a model (offline) or a running node (live), scored
against Cityscapes-style ground truth, with a report.

One module per step: ``handoff`` (what a replay hands over), ``offline`` (the replay without
ROS), ``ground_truth``, ``predictions`` (the frames written as Cityscapes files), ``scoring``,
``evaluate`` (pairing by stamp, counting), ``report`` and ``plots``. Import from here.

The pieces, in the order a replay uses them:

1. A *replay* produces a ``ReplayOutput``: what came back for each header stamp (a
   ``FrameResult``: the id map at camera resolution and the latency, or None) and the stamps that
   were sent. ``run_offline`` is the replay without ROS (the Predictor on every frame); the live
   replay (rclpy, pisr_ros.ros) produces the same object.
2. ``evaluate_replay`` pairs stamps with image ids through the bag's frames map
   (pisr_ros.evaluation.bags), counts what was sent, received, dropped and scored, writes the
   predictions and scores them (``score_frames``), then writes the report (``write_report``).
3. ``score_frames`` writes predictions in the Cityscapes panoptic format (what ``pisr-ros
   predict`` writes: panoptic.json + PNGs + semantic labelIds) and scores them with the project's
   evaluator (pisr_ros.evaluation.panoptic_quality and .semantic) against the ground-truth images
   that were scored, and nothing else.

Semantics that matter when reading the numbers:

- PQ/SQ/RQ and mIoU are over the *scored* frames: labelled frames whose result came back. A
  frame that did not come back is *dropped*: counted and listed, never silently left out. The
  report also gives PQ with each dropped frame scored as an empty (all-void) prediction, i.e.
  every ground-truth segment of it a false negative (``panoptic_with_drops``).
- The semantic labelIds scored for mIoU are the class of each pixel's panoptic segment
  (trainId -> labelId, void -> 0), the only semantics a node's labels carry; ``pisr-ros predict``
  writes the semantic head's argmax instead, so its mIoU differs while its PQ is the same.
- Frames whose stamp is not in the frames map are *unlabelled*: sent (they load the node like any
  other) but not scored.
"""
from pisr_ros.evaluation.replay.evaluate import evaluate_replay, pick_examples
from pisr_ros.evaluation.replay.ground_truth import GroundTruth, load_ground_truth
from pisr_ros.evaluation.replay.handoff import Counts, FrameResult, ReplayOutput
from pisr_ros.evaluation.replay.offline import run_offline
from pisr_ros.evaluation.replay.plots import EXAMPLES_DIR, PLOTS_DIR, colorize_panoptic
from pisr_ros.evaluation.replay.predictions import PREDICTIONS_DIR, add_frame, open_predictions
from pisr_ros.evaluation.replay.report import METRICS, REPORT, latency_summary, write_report
from pisr_ros.evaluation.replay.scoring import score_frames, score_written
from pisr_ros.evaluation.replay.text import pct

__all__ = [
    "EXAMPLES_DIR", "METRICS", "PLOTS_DIR", "PREDICTIONS_DIR", "REPORT", "Counts", "FrameResult", "GroundTruth",
    "ReplayOutput", "add_frame", "colorize_panoptic", "evaluate_replay", "latency_summary", "load_ground_truth",
    "open_predictions", "pct", "pick_examples", "run_offline", "score_frames", "score_written", "write_report",
]
