"""OANet's Spatial Ranking Module (Liu et al. 2019, section 3.2) as YOLO-Panoptic's learned merge
(``merge: ranking``; docs/yolo_panoptic.md, "Ranking merge").

A frame's instance masks are painted into one channel per thing class (``paint``: 1 where an
instance of the class covers the cell; instances of one class share their channel), a separable
large-kernel convolution (k x 1 then 1 x k) turns that into a ranking score map, normalised over
the classes per cell (softmax), and each instance's ranking score is the mean of its class's
channel over its mask (``instance_scores``, OANet's equation 3). The merge then gives each
contested cell to the covering instance of highest ranking score instead of highest objectness.

``ranking_target`` and ``ranking_loss`` are equation 2: cross-entropy of the score map against
the ground truth's thing class, only where the choice matters (see ``ranking_target``).

The weights do not belong to the network (they are trained after it, on its masks): a checkpoint
carries them under ``CHECKPOINT_KEY``, an exported ONNX file in its metadata.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CHECKPOINT_KEY = "spatial_ranking"  # checkpoint entry: {"state_dict": ..., "trained": {...}}
IGNORE = -1  # ranking_target's value where the loss does not look


class SpatialRanking(nn.Module):
    """(N, T, H, W) painted masks -> (N, T, H, W) ranking logits (softmax over T: the score map).

    The two convolutions have no activation between them: as in the large-kernel block OANet
    cites (Peng et al. 2017), the pair is a rank-limited k x k filter with 2k taps per channel
    pair instead of k^2."""

    def __init__(self, num_things: int, kernel: int):
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"kernel must be odd and positive (it is centred on the cell), got {kernel}")
        self.num_things = num_things
        self.kernel = kernel
        self.vertical = nn.Conv2d(num_things, num_things, (kernel, 1), padding=(kernel // 2, 0))
        self.horizontal = nn.Conv2d(num_things, num_things, (1, kernel), padding=(0, kernel // 2))

    def forward(self, painted: torch.Tensor) -> torch.Tensor:
        return self.horizontal(self.vertical(painted))


def paint(masks: torch.Tensor, classes: torch.Tensor, num_things: int) -> torch.Tensor:
    """(T, H, W) float32: 1 where at least one of the (K, H, W) ``masks`` whose class (index into
    the spec's thing_ids) is that channel covers the cell, 0 elsewhere."""
    k, h, w = masks.shape
    if k == 0:
        return masks.new_zeros((num_things, h, w), dtype=torch.float32)
    one_hot = F.one_hot(classes.long(), num_things).to(torch.float32)  # (K, T)
    return (torch.einsum("kt,khw->thw", one_hot, masks.to(torch.float32)) > 0).to(torch.float32)


def instance_scores(score_map: torch.Tensor, masks: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """(K,) OANet's equation 3: the mean over each instance's mask of its class's channel of the
    (T, H, W) score map (probabilities over T per cell). An empty mask scores 0 (it owns nothing)."""
    if masks.shape[0] == 0:
        return score_map.new_zeros((0,))
    plane = score_map[classes.long()]  # (K, H, W)
    m = masks.to(score_map.dtype)
    return (plane * m).sum((1, 2)) / m.sum((1, 2)).clamp(min=1.0)


def ranking_scores(module: SpatialRanking, masks: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """(K,) ranking scores of one frame's instances (``masks`` (K, H, W) 0/1, ``classes`` (K,))."""
    painted = paint(masks, classes, module.num_things)
    score_map = module(painted[None])[0].softmax(0)
    return instance_scores(score_map, masks, classes)


def conflicts(painted: torch.Tensor) -> torch.Tensor:
    """(..., H, W) bool: cells painted in at least two class channels of (..., T, H, W)."""
    return painted.sum(-3) >= 2


def ranking_target(painted: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """(H, W) long: the ground truth's thing class (index into thing_ids; ``truth`` holds it, and
    ``IGNORE`` where the truth is stuff or void) on the cells where the score map decides
    something, ``IGNORE`` elsewhere.

    A cell is supervised when masks of at least two different thing classes cover it and the
    truth is one of them. Elsewhere the score map decides nothing the merge reads: one painted
    class (one instance, or several of one class, which all read the same channel) has no rival
    channel to beat; a truth that is stuff, void, or a class no mask there has cannot be given
    the cell by any order of these instances."""
    target = torch.full(truth.shape, IGNORE, dtype=torch.long, device=truth.device)
    thing = truth >= 0
    t = truth.clamp(min=0).long()
    painted_truth = painted.gather(0, t[None])[0] > 0
    keep = conflicts(painted) & thing & painted_truth
    target[keep] = t[keep]
    return target


def ranking_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """OANet's equation 2: the mean cross-entropy of (N, T, H, W) ``logits`` over the supervised
    cells of (N, H, W) ``target``; exactly 0 (with a zero gradient) when none is."""
    total = F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="sum")
    count = (target != IGNORE).sum()
    return total / count.clamp(min=1).to(total.dtype)


def ranking_state(entry, where: str) -> dict:
    """The module's weights from a checkpoint's ``CHECKPOINT_KEY`` entry; ValueError naming
    ``where`` when the entry is not one ``pisr-ros train-ranking`` wrote."""
    state = entry.get("state_dict") if isinstance(entry, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{where}: its {CHECKPOINT_KEY!r} entry holds no weights; write it again with "
                         "`pisr-ros train-ranking`")
    return state


def load_ranking(state: dict, num_things: int, kernel: int, where: str) -> SpatialRanking:
    """A ``SpatialRanking`` of the spec's shape with ``state``; ValueError naming ``where`` when the
    weights are of another shape (another kernel or class count than the spec says)."""
    module = SpatialRanking(num_things, kernel)
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{where}: its spatial ranking weights do not fit its spec (ranking.kernel {kernel}, "
                         f"{num_things} thing classes): {str(exc).splitlines()[0]}; train them again with "
                         "`pisr-ros train-ranking`") from exc
    return module.eval()
