"""Training OANet's spatial ranking module (``merge: ranking``) on top of a trained YOLO-Panoptic.

The network stays frozen, and that is not only a saving: the module reads 0/1 masks (the mask
head's probabilities thresholded and pasted), so no gradient of L_srm could reach the network
anyway; training jointly would only move the masks under the module while it learns. Frozen, it
learns on exactly the masks it will be served, each frame costs one forward pass of the network,
once, and the merge is the only thing that differs between the two sides of the ablation.

So ``collect`` runs the network and its post-processing (the model's own settings) over a split
once and keeps, per frame that has something to learn, the painted class channels (bit-packed:
one bit per thing class and cell) and the ``ranking_target``; ``fit`` then trains the module on
those for ``iterations`` steps, which is seconds to minutes on a CPU and needs no resume.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pisr_ros.errors import UsageError
from pisr_ros.models.yolo_panoptic.spatial_ranking import (CHECKPOINT_KEY, IGNORE, SpatialRanking, conflicts, paint,
                                                           ranking_loss, ranking_target)


@dataclass
class Examples:
    """The frames with supervised cells: ``codes`` (F, h, w) painted channels as bits (bit t: thing
    class t), ``targets`` (F, h, w) int8 (``IGNORE`` where not supervised)."""

    codes: torch.Tensor
    targets: torch.Tensor
    num_things: int
    frames_read: int
    conflict_cells: int  # cells with masks of two classes or more, over every frame read

    def painted(self, index: torch.Tensor) -> torch.Tensor:
        bits = torch.arange(self.num_things, dtype=torch.int64)
        return ((self.codes[index].long()[:, None] >> bits[None, :, None, None]) & 1).float()

    @property
    def supervised_cells(self) -> int:
        return int((self.targets != IGNORE).sum())


def encode(painted: torch.Tensor) -> torch.Tensor:
    """(T, h, w) 0/1 -> (h, w) integer with bit t set where channel t is painted."""
    bits = 1 << torch.arange(painted.shape[0], dtype=torch.int64)
    code = (painted.long() * bits[:, None, None]).sum(0)
    return code.to(torch.uint8 if painted.shape[0] <= 8 else torch.int64)


def truth_on_grid(semantic: np.ndarray, thing_ids, stride: int = 4) -> torch.Tensor:
    """(h, w) thing class index (into ``thing_ids``) of the ground truth at each grid cell's
    centre (input pixel (stride i + stride/2, stride j + stride/2), the cells the masks are pasted
    on), ``IGNORE`` for stuff and void."""
    lut = np.full(256, IGNORE, np.int64)
    lut[list(thing_ids)] = np.arange(len(thing_ids))
    return torch.from_numpy(lut[semantic[stride // 2::stride, stride // 2::stride]])


def collect(model, spec, settings, root, split: str = "train", frames: int | None = None, device="cpu",
            progress: bool = True) -> Examples:
    """Run the frozen network over ``split`` (at most ``frames`` frames) and keep its frames with
    supervised cells (see the module docstring)."""
    from tqdm import tqdm

    from pisr_ros.data.yolo_targets import YoloPanopticDataset
    from pisr_ros.inference.predictor import normalize
    from pisr_ros.postprocess.yolo_panoptic import YoloPanopticPostprocessor

    dataset = YoloPanopticDataset(root, split, tuple(spec.input_size), spec.thing_ids, train=False)
    post = YoloPanopticPostprocessor(spec, model.mask_head, device)
    model = model.to(device).eval()
    n = len(dataset) if frames is None else min(frames, len(dataset))
    codes, targets, conflict_cells = [], [], 0
    with torch.no_grad():
        for index in tqdm(range(n), desc="train-ranking: masks", unit="frame", disable=not progress):
            sample = dataset[index]
            image = torch.from_numpy(sample["image"])[None].to(device)
            heads = model(normalize(image, spec.pixel_mean, spec.pixel_std))
            frame = post.instances(heads, settings)[0]
            painted = paint(frame.masks, frame.detections.classes, spec.num_things).cpu()
            conflict_cells += int(conflicts(painted).sum())
            target = ranking_target(painted, truth_on_grid(sample["semantic"], spec.thing_ids))
            if (target != IGNORE).any():
                codes.append(encode(painted))
                targets.append(target.to(torch.int8))
    grid = (spec.input_size[0] // 4, spec.input_size[1] // 4)
    empty = torch.zeros((0, *grid))
    return Examples(torch.stack(codes) if codes else empty.to(torch.uint8),
                    torch.stack(targets) if targets else empty.to(torch.int8), spec.num_things, n, conflict_cells)


@dataclass
class FitResult:
    module: SpatialRanking
    losses: list[float]
    accuracy_before: float  # share of supervised cells where the score map's argmax is the truth
    accuracy_after: float
    seconds: float


def accuracy(module: SpatialRanking, examples: Examples, batch: int = 16) -> float:
    right = total = 0
    with torch.no_grad():
        for start in range(0, len(examples.codes), batch):
            index = torch.arange(start, min(start + batch, len(examples.codes)))
            target = examples.targets[index].long()
            keep = target != IGNORE
            right += int((module(examples.painted(index)).argmax(1) == target)[keep].sum())
            total += int(keep.sum())
    return right / max(total, 1)


def fit(examples: Examples, kernel: int, iterations: int, batch_size: int = 8, lr: float = 1e-2, seed: int = 0,
        progress: bool = True) -> FitResult:
    """Adam on ``ranking_loss`` over random batches of ``examples``."""
    from tqdm import tqdm

    if len(examples.codes) == 0:
        raise UsageError("no frame has masks of two classes overlapping where the ground truth is one of them: "
                         "the ranking module has nothing to learn from (more frames, or a model that finds more "
                         "instances)")
    torch.manual_seed(seed)
    rng = torch.Generator().manual_seed(seed)
    module = SpatialRanking(examples.num_things, kernel)
    before = accuracy(module, examples)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    losses = []
    start = time.perf_counter()
    bar = tqdm(range(iterations), desc="train-ranking: fit", unit="it", disable=not progress)
    for _ in bar:
        index = torch.randint(len(examples.codes), (min(batch_size, len(examples.codes)),), generator=rng)
        loss = ranking_loss(module(examples.painted(index)), examples.targets[index].long())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    seconds = time.perf_counter() - start
    return FitResult(module.eval(), losses, before, accuracy(module, examples), seconds)


def write_ranked_checkpoint(ckpt: dict, spec, result: FitResult, out: Path, trained: dict) -> None:
    """``ckpt`` (the YOLO-Panoptic checkpoint's dict) with the module's weights added and the
    spec's ranking kernel set to the one trained: one file serves both merges."""
    ranked_spec = dataclasses.replace(spec, ranking=dataclasses.replace(spec.ranking, kernel=result.module.kernel))
    state = {k: v.detach().cpu().clone() for k, v in result.module.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(ckpt, spec=ranked_spec.to_dict(), **{CHECKPOINT_KEY: {"state_dict": state, "trained": trained}}),
               str(out))
