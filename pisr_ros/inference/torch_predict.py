"""One image through a PyTorch Panoptic-DeepLab model: resize, normalise, run, post-process,
and bring the id map back to the image's own resolution.

    model, spec = load_checkpoint("runs/x/final.pt")
    result = predict_image(model, rgb, spec.input_size)          # PanopticResult at rgb's size

A later ``Predictor`` generalises this to other backends; the steps and their order are the
ones every backend must reproduce.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from pisr_ros.panoptic import PanopticResult, resize_nearest
from pisr_ros.postprocess.panoptic_deeplab import PostprocessConfig, panoptic_deeplab_postprocess


def normalize(images: torch.Tensor, pixel_mean: Sequence[float], pixel_std: Sequence[float]) -> torch.Tensor:
    """(N,3,H,W) RGB 0..255 (uint8 or float) -> float32 network input, on the images' device.

    Images travel as uint8 (4x less to copy to the GPU) and are normalised where they arrive.
    """
    mean = torch.as_tensor(pixel_mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    std = torch.as_tensor(pixel_std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    return (images.float() - mean) / std


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def predict_image_and_semantic(
    model: torch.nn.Module,
    image_rgb: np.ndarray,
    input_size: tuple[int, int] | None = None,
    cfg: PostprocessConfig = PostprocessConfig(),
) -> tuple[PanopticResult, np.ndarray]:
    """The panoptic result and the semantic head's argmax (HxW uint8 trainIds), both at the
    image's resolution.

    The argmax is what semantic mIoU is scored on: unlike ``result.semantic`` it keeps thing
    pixels that found no center and stuff regions below the post-processing's area threshold.
    ``input_size`` (H, W) defaults to ``model.spec.input_size``; mean and std come from
    ``model.spec``. The model should be in eval mode.
    """
    spec = model.spec
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"image must be HxWx3 uint8 RGB, got {image_rgb.shape} {image_rgb.dtype}")
    h, w = image_rgb.shape[:2]
    ih, iw = tuple(input_size or spec.input_size)
    resized = image_rgb if (h, w) == (ih, iw) else cv2.resize(image_rgb, (iw, ih), interpolation=cv2.INTER_LINEAR)
    device = model_device(model)
    x = torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1)[None].to(device)
    heads = model(normalize(x, spec.pixel_mean, spec.pixel_std))
    batch = panoptic_deeplab_postprocess(heads["semantic"], heads["center"], heads["offset"],
                                         input_size=(ih, iw), cfg=cfg)
    id_map = batch.id_map[0].cpu().numpy()
    semantic = batch.semantic[0].to(torch.uint8).cpu().numpy()
    confidence = batch.confidence[0].cpu().numpy()
    # Ids are resized as ids (nearest); interpolating them would invent segments at borders.
    result = PanopticResult(np.ascontiguousarray(resize_nearest(id_map, (h, w))),
                            np.ascontiguousarray(resize_nearest(confidence, (h, w))))
    return result, np.ascontiguousarray(resize_nearest(semantic, (h, w)))


def predict_image(
    model: torch.nn.Module,
    image_rgb: np.ndarray,
    input_size: tuple[int, int] | None = None,
    cfg: PostprocessConfig = PostprocessConfig(),
) -> PanopticResult:
    """``PanopticResult`` of one HxWx3 uint8 RGB image, at the image's resolution."""
    return predict_image_and_semantic(model, image_rgb, input_size, cfg)[0]
