"""``Predictor``: camera image(s) -> ``PanopticResult`` at each image's own resolution, on any
backend.

    predictor = Predictor.from_file("models/pd_light_base_synth.pt", backend="auto")
    result = predictor(bgr_image, encoding="bgr")  # HxWx3 uint8 -> PanopticResult (HxW)

Stages, each timed in ``last_timings`` (seconds; ``NetworkOutput.timings`` for the halves below):
  preprocess   resize to the network's input size and normalise, on the backend's device
  network      the backend call
  postprocess  the model family's post-processing (Panoptic-DeepLab: center NMS, grouping,
               merging; pisr_ros.postprocess), on the same device, with ``predictor.postprocess``:
               the family's settings for the device, those tuned into the model, then the caller's
  resize       the id map (and semantic map, confidence) back to the image's size (nearest),
               and the segments, computed on the small map (pisr_ros.panoptic.segments_of)

``predict`` runs them in one go. ``run_network`` (preprocess, network) and ``finish``
(postprocess, resize) split them in two, so that a caller can run the network of one frame
while another thread finishes the frame before (panoptic_node's pipeline).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from pisr_ros import settings
from pisr_ros.inference.backends import TorchBackend, make_backend
from pisr_ros.inference.model_files import ModelInfo, read_model_info
from pisr_ros.panoptic import PanopticResult, resize_nearest, segments_of, semantic_of

ENCODINGS = ("rgb", "bgr")


@dataclass
class NetworkOutput:
    """The heads of a batch, between ``Predictor.run_network`` and ``Predictor.finish``."""

    heads: dict[str, torch.Tensor]
    sizes: list[tuple[int, int]]  # each image's (H, W): what the results are resized to
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage so far


def normalize(images: torch.Tensor, pixel_mean: Sequence[float], pixel_std: Sequence[float]) -> torch.Tensor:
    """(N,3,H,W) RGB 0..255 (uint8 or float) -> float32 network input, on the images' device:
    (x - mean) * (1 / std), the expression every path (GPU preprocess, training) uses."""
    mean = torch.as_tensor(pixel_mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    inv_std = 1.0 / torch.as_tensor(pixel_std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    return (images.float() - mean) * inv_std


def model_settings(info: ModelInfo, device: str | torch.device, **given):
    """The post-processing settings of ``info``'s family on ``device``: the family's defaults for
    the device, then what was tuned into the model file, then ``given`` (None = not given).
    Raises UsageError naming the refused values."""
    from pisr_ros.errors import UsageError

    try:
        return settings.resolve(info.family.settings_class, device, info.postprocess, **given)
    except ValueError as exc:
        raise UsageError(f"{info.path.name}: {exc}") from exc


def check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = (f"{type(image).__name__} {getattr(image, 'shape', '')} {getattr(image, 'dtype', '')}").strip()
        raise ValueError(f"image must be a HxWx3 uint8 numpy array (bgr or rgb), got {got}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must be at least 1x1, got {image.shape[0]}x{image.shape[1]}")


class Predictor:
    def __init__(self, backend, info: ModelInfo, postprocess=None, keep_confidence: bool = True,
                 profile: bool = False, keep_semantic_head: bool = False):
        """``postprocess``: the family's settings (default: ``model_settings(info, device)``).
        ``keep_confidence``: also resize the confidence map to each image (the segments' scores
        are exact either way). ``keep_semantic_head``: also give each result the semantic head's
        own argmax (``PanopticResult.semantic_head``, what mIoU is scored on). ``profile``:
        synchronise CUDA between stages so that ``last_timings`` is true per stage (costs a
        little on GPUs; nothing on CPUs)."""
        self.backend = backend
        self.info = info
        self.family = info.family
        self.device = backend.device
        self.input_size = tuple(backend.input_size)
        self.postprocess = postprocess if postprocess is not None else model_settings(info, self.device)
        # A family whose post-processing has weights of its own (a mask head run on the boxes the
        # network found) builds it here; the others post-process with a pure function.
        make = getattr(self.family, "postprocessor", None)
        self._postprocess = (make(info, self.device, getattr(backend, "model", None)) if make is not None
                             else self.family.postprocess)
        reason = self.settings_problem(self.postprocess)
        if reason:
            from pisr_ros.errors import UsageError

            raise UsageError(f"{info.path.name}: {reason}")
        self.keep_confidence = keep_confidence
        self.keep_semantic_head = keep_semantic_head
        self.profile = profile
        self.last_timings: dict[str, float] = {}
        # normalize()'s float32 numbers, for the CPU path's per-channel numpy passes.
        self._mean_np = np.asarray(info.pixel_mean, np.float32)
        self._inv_std_np = np.float32(1.0) / np.asarray(info.pixel_std, np.float32)

    @classmethod
    def from_file(cls, model: str, backend: str = "auto", device: str = "cpu", *, fp16: bool = False,
                  threads: int | None = None, input_size: tuple[int, int] | None = None,
                  postprocess=None, keep_confidence: bool = True, profile: bool = False,
                  keep_semantic_head: bool = False, **tensorrt_options) -> Predictor:
        """A Predictor for a checkpoint (.pt) or an exported ONNX file; ``backend`` is auto,
        torch, onnxruntime or tensorrt (see pisr_ros.inference.backends); ``input_size`` (H, W)
        the network runs at, default the model's own."""
        info = read_model_info(model)
        engine = make_backend(info, backend, device, fp16=fp16, threads=threads, input_size=input_size,
                              **tensorrt_options)
        return cls(engine, info, postprocess, keep_confidence, profile, keep_semantic_head)

    @classmethod
    def from_module(cls, model: torch.nn.Module, spec, device: str | torch.device = "cpu", *,
                    postprocess=None, input_size: tuple[int, int] | None = None,
                    keep_semantic_head: bool = True) -> Predictor:
        """A Predictor over a torch model in memory (training's validation), built from ``spec``.
        It puts the model in eval mode: a caller that trains on puts it back."""
        from pathlib import Path

        from pisr_ros.families import family_of

        info = ModelInfo(path=Path(f"<{spec.name}>"), kind="module", name=spec.name,
                         input_size=tuple(int(v) for v in spec.input_size),
                         pixel_mean=tuple(float(v) for v in spec.pixel_mean),
                         pixel_std=tuple(float(v) for v in spec.pixel_std),
                         spec=spec.to_dict(), source_sha256="", model_spec=spec)
        names = tuple(o.name for o in family_of(spec).outputs(spec))
        backend = TorchBackend(model, tuple(input_size or info.input_size), names, device)
        return cls(backend, info, postprocess, keep_semantic_head=keep_semantic_head)

    @property
    def postprocessor(self):
        """The family's post-processing callable ``(heads, input_size, settings) -> batch``; for
        YOLO-Panoptic the object holding the mask head and ranking module (the merge ablation
        swaps the module on it)."""
        return self._postprocess

    def settings_problem(self, cfg) -> str | None:
        """Why this model cannot be post-processed with settings ``cfg``, which its family's
        declaration accepts (YOLO-Panoptic's ``merge: ranking`` without the ranking weights), or
        None. The node asks before it takes a new parameter value."""
        check = getattr(self._postprocess, "problem", None)
        return check(cfg) if check is not None else None

    # ------------------------------------------------------------------------------ stages
    def _sync(self) -> None:
        if self.profile and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def preprocess(self, images: Sequence[np.ndarray], encoding: str) -> torch.Tensor:
        """(N,3,H,W) float32 normalised network input on the backend's device."""
        ih, iw = self.input_size
        if self.device.type == "cpu":
            # OpenCV's uint8 resize, then one numpy pass per channel into the NCHW float buffer:
            # the same float32 numbers as the GPU path's torch expression, 2x faster than it on a
            # CPU, and free of torch's thread pool, which stalls when other threads hold the cores.
            x = np.empty((len(images), 3, ih, iw), np.float32)
            for i, img in enumerate(images):
                resized = img if img.shape[:2] == (ih, iw) else cv2.resize(img, (iw, ih), interpolation=cv2.INTER_LINEAR)
                for c in range(3):
                    np.subtract(resized[..., 2 - c if encoding == "bgr" else c], self._mean_np[c],
                                out=x[i, c], dtype=np.float32)
                    x[i, c] *= self._inv_std_np[c]
            return torch.from_numpy(x)

        # uint8 to the GPU (4x less to copy than float), resized there.
        def upload(img):
            t = torch.from_numpy(img).to(self.device).permute(2, 0, 1)[None].float()
            return t if t.shape[-2:] == (ih, iw) else F.interpolate(t, size=(ih, iw), mode="bilinear", align_corners=False)

        x = torch.cat([upload(img) for img in images])
        if encoding == "bgr":
            x = x.flip(1)
        return normalize(x, self.info.pixel_mean, self.info.pixel_std).contiguous()

    def __call__(self, image: np.ndarray, encoding: str = "rgb") -> PanopticResult:
        return self.predict([image], encoding)[0]

    def predict(self, images: Sequence[np.ndarray] | np.ndarray, encoding: str = "rgb") -> list[PanopticResult]:
        """``PanopticResult`` per image; ``images`` is one HxWx3 uint8 image, a list of them (sizes
        may differ), or an (N,H,W,3) uint8 array."""
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        elif isinstance(images, np.ndarray):
            images = [images]
        if not images:
            return []
        out = self.run_network(images, encoding)
        results = self.finish(out)
        self.last_timings = out.timings
        return results

    def run_network(self, images: Sequence[np.ndarray], encoding: str = "rgb") -> NetworkOutput:
        """The first half of ``predict``: preprocess and network, for a non-empty list of images.
        Timings go into the result, not ``last_timings``: the halves may run on two threads."""
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        if not images:
            raise ValueError("run_network needs at least one image")
        for img in images:
            check_image(img)
        t0 = time.perf_counter()
        x = self.preprocess(images, encoding)
        self._sync()
        t1 = time.perf_counter()
        heads = self.backend.run(x)
        self._sync()
        t2 = time.perf_counter()
        return NetworkOutput(heads, [img.shape[:2] for img in images], {"preprocess": t1 - t0, "network": t2 - t1})

    def finish(self, out: NetworkOutput) -> list[PanopticResult]:
        """The second half of ``predict``: postprocess and resize ``out`` to its images' sizes,
        with the post-processing settings of the moment."""
        t2 = time.perf_counter()
        batch = self._postprocess(out.heads, self.input_size, self.postprocess)
        ids = batch.id_map.cpu().numpy()
        conf = batch.confidence.cpu().numpy()
        heads = batch.semantic.to(torch.uint8).cpu().numpy() if self.keep_semantic_head else None
        t3 = time.perf_counter()
        results = [self._at_image_size(ids[i], conf[i], size) for i, size in enumerate(out.sizes)]
        if heads is not None:
            for result, head, size in zip(results, heads, out.sizes):
                result.semantic_head = resize_nearest(head, size)
        t4 = time.perf_counter()
        out.timings.update(postprocess=t3 - t2, resize=t4 - t3)
        return results

    def _at_image_size(self, ids: np.ndarray, conf: np.ndarray, size: tuple[int, int]) -> PanopticResult:
        # Ids are resized as ids (nearest); interpolating them would invent segments at borders.
        return PanopticResult(
            id_map=resize_nearest(ids, size),
            confidence=resize_nearest(conf, size) if self.keep_confidence else None,
            segments=segments_of(ids, conf, size=size),
            semantic_map=resize_nearest(semantic_of(ids), size),
        )

    def describe(self) -> str:
        ih, iw = self.input_size
        return (f"{self.info.name} ({self.info.path.name}) on {self.backend.name} ({self.device}), "
                f"input {ih}x{iw}")
