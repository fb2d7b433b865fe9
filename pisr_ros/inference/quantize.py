"""Static int8 quantization of an exported network, and how it compares with the float one.

    int8 = quantize_onnx("models/m.onnx", "models/m.int8.onnx", calibration_frames(ROOT, 64))
    Predictor.from_file(str(int8), backend="onnxruntime")   # served like any export

ONNX Runtime's QDQ tooling (``onnxruntime.quantization.quantize_static``): weights int8 per
output channel, activations uint8 with ranges calibrated on real network inputs (training
frames, preprocessed exactly as the Predictor does). QDQ keeps the float graph and wraps each
quantized tensor in QuantizeLinear/DequantizeLinear pairs; ONNX Runtime's CPU provider fuses
them into integer kernels (VNNI where the CPU has it). The pisr_ros metadata of the float file is
copied, so the int8 file is a model file like the export it came from (``read_model_info``).
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pisr_ros.errors import UsageError

INT8_SUFFIX = ".int8.onnx"
META_PREFIX = "pisr_ros."
META_PRECISION = "pisr_ros.precision"  # "int8" on quantized files; absent on float exports
META_QUANTIZATION = "pisr_ros.quantization"  # how it was calibrated (JSON)
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


def int8_path_for(model: str | Path) -> Path:
    """Where the int8 file of a model goes: ``m.pt`` or ``m.onnx`` -> ``m.int8.onnx`` beside it."""
    model = Path(model)
    stem = model.name[: -len(INT8_SUFFIX)] if model.name.endswith(INT8_SUFFIX) else model.stem
    return model.with_name(stem + INT8_SUFFIX)


def split_images(root: str | Path, split: str, count: int | None = None) -> list[tuple[str, Path]]:
    """(image_id, left image path) of the first ``count`` (all when None or 0) frames of a split
    of a Cityscapes-layout dataset, by id."""
    from pisr_ros.cityscapes_layout import image_paths, list_split

    ids = list_split(root, split)
    if not ids:
        raise UsageError(f"--data {root}: no {split} frames (nothing under {Path(root) / 'leftImg8bit' / split}); "
                         f"make them with `pisr-ros synth --out {root} --split {split} --num 64 --size 512x1024 --seed 1`")
    ids = ids[:count] if count else ids
    return [(i, image_paths(root, split, i).left_img) for i in ids]


def network_inputs(predictor, frames: Sequence[np.ndarray]) -> Iterator[np.ndarray]:
    """Each RGB frame as the (1,3,H,W) float32 array the predictor's network is fed."""
    for rgb in frames:
        yield predictor.preprocess([rgb], "rgb").cpu().numpy()


class _FrameReader:
    """``CalibrationDataReader`` protocol: ``get_next()`` -> one input feed, None at the end."""

    def __init__(self, input_name: str, arrays: Iterator[np.ndarray]):
        self._name, self._arrays = input_name, arrays

    def get_next(self):
        array = next(self._arrays, None)
        return None if array is None else {self._name: array}

    def rewind(self):  # the calibrator reads the frames once
        pass


@dataclass
class QuantizeSettings:
    calibration_frames: int = 64
    method: str = "minmax"
    per_channel: bool = True
    op_types: tuple[str, ...] = ()  # operator types to quantize (empty: ONNX Runtime's default set)
    keep_float: tuple[str, ...] = ()  # regular expressions: nodes whose names match stay float
    calibration_data: str = ""  # where the frames came from, for the file's metadata


def quantize_onnx(fp32: str | Path, out: str | Path, calibration_images: Sequence[Path],
                  settings: QuantizeSettings = QuantizeSettings(), log=print) -> Path:
    """Write the statically quantized ``fp32`` ONNX to ``out`` (atomically), with activation
    ranges from ``calibration_images`` (image files, any size: resized as the Predictor does)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from pisr_ros.image_files import read_rgb
    from pisr_ros.inference.model_files import ONNX_INPUT, read_model_info
    from pisr_ros.inference.predictor import Predictor

    if settings.method not in CALIBRATION_METHODS:
        raise UsageError(f"calibration method {settings.method!r}: choose one of {', '.join(CALIBRATION_METHODS)}")
    if not calibration_images:
        raise UsageError("quantization needs at least one calibration frame")
    fp32, out = Path(fp32), Path(out)
    info = read_model_info(fp32)
    if info.kind != "onnx":
        raise UsageError(f"{fp32}: quantize an ONNX export (pisr-ros export), not a checkpoint")
    # The Predictor's own preprocessing, so that the calibrated ranges are those the node feeds.
    predictor = Predictor.from_file(str(fp32), backend="onnxruntime", device="cpu")
    arrays = network_inputs(predictor, (read_rgb(p) for p in calibration_images))
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[settings.method]
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pisr_quant_") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Shape inference and graph clean-up first, as ONNX Runtime advises for quantization.
        quant_pre_process(str(fp32), str(prepared))
        quantized = Path(tmp) / "int8.onnx"
        t0 = time.perf_counter()
        quantize_static(
            str(prepared), str(quantized), _FrameReader(ONNX_INPUT, arrays),
            quant_format=QuantFormat.QDQ, per_channel=settings.per_channel,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=method, op_types_to_quantize=list(settings.op_types) or None,
            nodes_to_exclude=float_nodes(prepared, settings.keep_float) or None,
            # Calibration keeps every intermediate tensor of every frame in memory otherwise.
            extra_options={"CalibMaxIntermediateOutputs": 8} if settings.method != "minmax" else None,
        )
        log(f"calibrated and quantized in {time.perf_counter() - t0:.1f} s "
            f"({len(calibration_images)} frames, {settings.method})")
        proto = onnx.load(str(quantized))
        source = onnx.load(str(fp32), load_external_data=False)
        kept = [p for p in proto.metadata_props if not p.key.startswith(META_PREFIX)]
        del proto.metadata_props[:]
        proto.metadata_props.extend(kept)
        for p in source.metadata_props:
            if p.key.startswith(META_PREFIX) and p.key not in (META_PRECISION, META_QUANTIZATION):
                proto.metadata_props.add(key=p.key, value=p.value)
        proto.metadata_props.add(key=META_PRECISION, value="int8")
        proto.metadata_props.add(key=META_QUANTIZATION, value=json.dumps({
            "tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
            "weights": "int8 per channel" if settings.per_channel else "int8 per tensor",
            "activations": "uint8", "calibration": settings.method, "kept_float": list(settings.keep_float),
            "calibration_frames": len(calibration_images), "calibration_data": settings.calibration_data,
            "source_onnx_sha256": _sha256(fp32)}, sort_keys=True))
        tmp_out = out.with_name(f".{out.name}.tmp{os.getpid()}")
        onnx.save(proto, str(tmp_out))
        os.replace(tmp_out, out)
    return out


def float_nodes(path: Path, patterns: Sequence[str]) -> list[str]:
    """Names of the graph's nodes that match one of the regular expressions ``patterns``
    (``re.match``; the export names nodes by module path, e.g. ``/pisr/MatMul_1``)."""
    if not patterns:
        return []
    import re

    import onnx

    try:
        compiled = [re.compile(p) for p in patterns]
    except re.error as exc:
        raise UsageError(f"keep-float pattern: {exc}") from exc
    return [n.name for n in onnx.load(str(path), load_external_data=False).graph.node
            if any(c.match(n.name) for c in compiled)]


def _sha256(path: Path) -> str:
    from pisr_ros.inference.model_files import sha256_of

    return sha256_of(path)


# ------------------------------------------------------------------------------ checking
@dataclass
class Comparison:
    """fp32 against int8 on the same frames, with the same post-processing."""

    frames: int = 0
    identical_ids: float = 0.0  # fraction of pixels with the same panoptic id
    same_class: float = 0.0  # fraction of pixels with the same semantic class (void counts as one)
    network_ms: dict[str, float] = field(default_factory=dict)  # median per precision
    pq: dict[str, dict] = field(default_factory=dict)  # precision -> {All, Things, Stuff: pq/sq/rq}

    def as_dict(self) -> dict:
        return {"frames": self.frames, "identical_ids": self.identical_ids, "same_class": self.same_class,
                "network_ms_median": self.network_ms, "pq": self.pq}


def compare(fp32: str | Path, int8: str | Path, images: Sequence[tuple[str, Path]], *,
            pred_root: str | Path | None = None, threads: int | None = None, progress: bool = True) -> Comparison:
    """Run both models over ``images`` in alternating order (so drift on a shared machine slows
    both alike): pixel agreement of their id maps, network-time medians, and, with
    ``pred_root``, Cityscapes-format predictions of each under ``pred_root/{fp32,int8}``."""
    from tqdm import tqdm

    from pisr_ros.image_files import read_rgb
    from pisr_ros.evaluation.cityscapes_files import CityscapesWriter
    from pisr_ros.inference.predictor import Predictor
    from pisr_ros.panoptic import semantic_of

    models = {"fp32": fp32, "int8": int8}
    predictors = {k: Predictor.from_file(str(p), backend="onnxruntime", device="cpu", threads=threads,
                                         keep_confidence=False) for k, p in models.items()}
    writers = {k: CityscapesWriter(Path(pred_root) / k) for k in models} if pred_root else {}
    network = {k: [] for k in models}
    same_ids = same_cls = pixels = 0
    order = list(models)
    for n, (image_id, path) in enumerate(tqdm(images, desc="fp32 vs int8", unit="img", disable=not progress)):
        rgb = read_rgb(path)
        results = {}
        for k in (order if n % 2 == 0 else order[::-1]):
            results[k] = predictors[k](rgb)
            network[k].append(predictors[k].last_timings["network"])
            if writers:
                writers[k].add(image_id, path.name, results[k].id_map, None)
        a, b = results["fp32"].id_map, results["int8"].id_map
        same_ids += int((a == b).sum())
        same_cls += int((semantic_of(a) == semantic_of(b)).sum())
        pixels += a.size
    for w in writers.values():
        w.close()
    return Comparison(frames=len(images), identical_ids=same_ids / max(pixels, 1), same_class=same_cls / max(pixels, 1),
                      network_ms={k: float(np.median(v) * 1e3) for k, v in network.items() if v})


def panoptic_scores(root: str | Path, split: str, pred_dir: str | Path, workers: int | None = None) -> dict:
    """PQ/SQ/RQ (percent) for All, Things and Stuff of predictions written by ``compare``,
    against the split's ground truth of the same frames, through the evaluator ``pisr-ros
    evaluate`` runs."""
    from pisr_ros.cityscapes_layout import panoptic_dir, panoptic_json
    from pisr_ros.evaluation import panoptic_quality

    gt_json = panoptic_json(root, split)
    if not gt_json.is_file():
        raise UsageError(f"--data {root}: no panoptic ground truth for {split} ({gt_json} is missing)")
    pred_dir = Path(pred_dir)
    pred_json = pred_dir / "panoptic.json"
    predicted = {a["image_id"] for a in json.loads(pred_json.read_text())["annotations"]}
    gt = json.loads(gt_json.read_text())
    if {a["image_id"] for a in gt["annotations"]} != predicted:
        # A subset of the split (--val-frames): the ground truth of those frames alone.
        gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in predicted]
        gt["images"] = [i for i in gt.get("images", []) if i.get("id") in predicted]
        gt_json = pred_dir / "ground_truth_subset.json"
        gt_json.write_text(json.dumps(gt))
    ev = panoptic_quality.evaluate(str(gt_json), str(panoptic_dir(root, split)), str(pred_json),
                                   str(pred_dir / "panoptic"), workers=workers)
    return {group: {m: 100.0 * float(ev.results[group][m]) for m in ("pq", "sq", "rq")}
            for group in ("All", "Things", "Stuff")}


def network_latency(fp32: str | Path, int8: str | Path, frame: np.ndarray, pairs: int = 20,
                    threads: int | None = None) -> dict[str, list[float]]:
    """Network seconds of each model on one frame's input, in ``pairs`` alternating pairs after
    a warm-up of each: the A/B figure to quote (medians, ratio)."""
    from pisr_ros.inference.predictor import Predictor

    predictors = {k: Predictor.from_file(str(p), backend="onnxruntime", device="cpu", threads=threads)
                  for k, p in (("fp32", fp32), ("int8", int8))}
    x = next(network_inputs(predictors["fp32"], [frame]))
    import torch

    x = torch.from_numpy(x)
    times = {k: [] for k in predictors}
    for k, p in predictors.items():
        for _ in range(2):
            p.backend.run(x)
    for i in range(pairs):
        for k in (("fp32", "int8") if i % 2 == 0 else ("int8", "fp32")):
            t0 = time.perf_counter()
            predictors[k].backend.run(x)
            times[k].append(time.perf_counter() - t0)
    return times
