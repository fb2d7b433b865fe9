"""A torch ``Dataset`` over the Cityscapes layout: leftImg8bit images with their gtFine
labelIds and instanceIds, as Panoptic-DeepLab training samples.

Labels come from ``gtFine/*_instanceIds.png`` (labelId*1000+k on thing instances, labelId
elsewhere), which holds the labelIds as well. Training mode: the image is resized to the model's ``input_size`` (``Augment.base_size``), then
randomly scaled (0.5-2.0), cropped and flipped (``pisr_ros.data.augment``), and the targets are
made from the crop (``pisr_ros.data.targets``). Evaluation mode: the image is resized to the
input size, nothing random. Real Cityscapes (1024x2048) and ``pisr-ros synth`` output read alike.

    ds = CityscapesPanoptic(root, "train", input_size=(512, 1024), crop_size=(256, 512))
    loader = DataLoader(ds, batch_size=8, collate_fn=collate)
    batch = next(iter(loader))   # "image" (N,3,h,w) uint8, the loss's targets, "index" (N,)

Randomness: each sample's augmentation draws from its own generator, seeded by the key it is
fetched with (see ``__getitem__``), not by the worker that happens to load it, so a run is
reproducible with any number of DataLoader workers and resumes mid-epoch exactly.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from pisr_ros import cityscapes_layout as layout
from pisr_ros.data.augment import Augment, Sample, augment, resize_sample
from pisr_ros.data.targets import INSTANCE_DIVISOR, TargetConfig, collate_targets, make_targets
from pisr_ros.errors import UsageError
from pisr_ros.image_files import read_rgb  # noqa: F401  (also imported from here)

#: Height of a full Cityscapes frame: ``make_targets``' ``scale`` is relative to it.
FULL_HEIGHT = 1024


def _read_label(path: Path, what: str) -> np.ndarray:
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise UsageError(f"cannot read {what} {path}: Cityscapes' gtFine (or `pisr-ros synth`) provides it")
    if arr.ndim != 2:
        raise UsageError(f"{path}: {what} must be a single-channel PNG, got shape {arr.shape}")
    return arr


def label_ids_of(instance_ids: np.ndarray) -> np.ndarray:
    """The labelIds map a Cityscapes instanceIds map implies (labelId*1000+k -> labelId)."""
    return np.where(instance_ids >= INSTANCE_DIVISOR, instance_ids // INSTANCE_DIVISOR, instance_ids).astype(np.uint8)


def read_sample(paths: layout.ImagePaths) -> Sample:
    """Image and labels of one image. Labels come from ``*_instanceIds.png`` alone: it holds the
    labelIds too (see ``label_ids_of``), which saves reading ``*_labelIds.png``."""
    instance_ids = _read_label(paths.instance_ids, "instanceIds").astype(np.int32)
    return Sample(read_rgb(paths.left_img), label_ids_of(instance_ids), instance_ids)


class CityscapesPanoptic(Dataset):
    """Samples of one split. ``crop_size`` defaults to ``input_size``; ``train=False`` ignores it,
    and ``thing_crop_prob`` (the share of crops placed on a thing instance, ``Augment``).

    Items are dicts of numpy arrays: ``image`` (3,h,w) uint8 RGB, the ``make_targets`` keys at
    the same size, and ``index``; ``collate`` stacks them into tensors.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        input_size: tuple[int, int],
        crop_size: tuple[int, int] | None = None,
        train: bool = True,
        scale_range: tuple[float, float] = (0.5, 2.0),
        flip: bool = True,
        target_cfg: TargetConfig = TargetConfig(),
        seed: int = 0,
        thing_crop_prob: float = 0.0,
    ):
        self.root = Path(root)
        self.split = split
        self.input_size = tuple(int(v) for v in input_size)
        self.train = train
        self.aug = Augment(self.input_size, tuple(int(v) for v in (crop_size or input_size)),
                           tuple(scale_range), flip, float(thing_crop_prob))
        self.target_cfg = target_cfg
        self.seed = seed
        self.image_ids = layout.list_split(self.root, split)
        if not self.image_ids:
            raise UsageError(
                f"no images under {self.root / 'leftImg8bit' / split}: expected the Cityscapes layout "
                f"(leftImg8bit/{split}/<city>/*{layout.LEFT_IMG_SUFFIX}); `pisr-ros synth --out "
                f"{self.root} --split {split} ...` writes one")

    def __len__(self) -> int:
        return len(self.image_ids)

    def paths(self, index: int) -> layout.ImagePaths:
        return layout.image_paths(self.root, self.split, self.image_ids[index])

    def __getitem__(self, key) -> dict:
        """``key``: an index, or (index, sample_seed) from a sampler that numbers its draws;
        a plain index draws with seed (dataset seed, index), the same on every call."""
        index, sample_seed = key if isinstance(key, tuple) else (key, None)
        index = int(index)
        sample = read_sample(self.paths(index))
        if self.train:
            rng = np.random.default_rng([self.seed, index] if sample_seed is None else [self.seed, index, int(sample_seed)])
            sample, scale = augment(sample, self.aug, rng)
        else:
            scale = 1.0
            sample = resize_sample(sample, self.input_size)
        # instanceIds carry the labelIds too (labelId*1000+k, or the plain labelId).
        targets = make_targets(sample.instance_ids, None, self.target_cfg,
                               scale=self.input_size[0] * scale / FULL_HEIGHT)
        targets["image"] = np.ascontiguousarray(sample.image.transpose(2, 0, 1))
        targets["index"] = np.int64(index)
        return targets


def collate(samples: list[dict]) -> dict[str, torch.Tensor]:
    """Stack ``CityscapesPanoptic`` items: ``image`` (N,3,h,w) uint8, ``index`` (N,) int64 and
    the loss's targets as ``collate_targets`` makes them."""
    keys = [k for k in samples[0] if k not in ("image", "index")]
    out = collate_targets([{k: s[k] for k in keys} for s in samples])
    out["image"] = torch.from_numpy(np.stack([s["image"] for s in samples]))
    out["index"] = torch.as_tensor([int(s["index"]) for s in samples], dtype=torch.int64)
    return out
