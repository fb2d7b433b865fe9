"""Panoptic-DeepLab post-processing against a plain loop-and-numpy transcription of
detectron2's get_panoptic_segmentation / merge_semantic_and_instance."""
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pisr_ros.panoptic import PanopticResult
from pisr_ros.postprocess.panoptic_deeplab import (
    PanopticDeepLabSettings as PostprocessConfig,
    center_mask as find_instance_centers,
    max_filter,
    panoptic_deeplab_postprocess,
)
from pisr_ros.taxonomy import NUM_CLASSES, THING_TRAIN_IDS


def reference(logits, center, offset, cfg):
    """One image, detectron2's semantics written out with loops: logits (C,H,W), center
    (H,W), offset (2,H,W) float32 numpy, all on the grid the ids are made on."""
    sem = logits.argmax(0)
    h, w = sem.shape
    # find_instance_center
    c = np.where(center > cfg.center_threshold, center, np.float32(-1)).astype(np.float32)
    r = (cfg.nms_kernel - 1) // 2
    padded = np.pad(c, r, constant_values=-np.inf)
    pooled = np.empty_like(c)
    for y in range(h):
        for x in range(w):
            pooled[y, x] = padded[y:y + 2 * r + 1, x:x + 2 * r + 1].max()
    c[c != pooled] = -1
    flat = np.sort(c.ravel())[::-1]
    kth = max(flat[min(cfg.top_k, flat.size) - 1], 0)
    centers = np.argwhere(c > kth)  # row-major, like torch.nonzero
    # get_instance_segmentation / group_pixels
    thing = np.isin(sem, THING_TRAIN_IDS)
    ins = np.zeros((h, w), np.int64)
    if len(centers):
        ys, xs = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
        ly, lx = ys + offset[0], xs + offset[1]
        dist = np.empty((len(centers), h, w), np.float32)
        for k, (cy, cx) in enumerate(centers.astype(np.float32)):
            dist[k] = np.sqrt((cy - ly) ** 2 + (cx - lx) ** 2)
        ins = (dist.argmin(0) + 1) * thing
    # merge_semantic_and_instance
    pan = np.full((h, w), cfg.void_id, np.int64)
    tracker = Counter()
    for iid in np.unique(ins):
        if iid == 0:
            continue
        mask = (ins == iid) & thing
        if not mask.any():
            continue
        values, counts = np.unique(sem[mask], return_counts=True)
        cls = int(values[counts.argmax()])  # ties: smallest class, as torch.mode on CPU
        tracker[cls] += 1
        pan[mask] = cls * cfg.label_divisor + tracker[cls]
    for cls in np.unique(sem):
        if cls in THING_TRAIN_IDS:
            continue
        mask = (sem == cls) & (ins == 0)
        if mask.sum() >= cfg.stuff_area_at(h, w):
            pan[mask] = cls * cfg.label_divisor
    return pan.astype(np.int32)


def random_heads(n, h, w, n_centers=8, seed=0, offset_scale=6.0):
    """Blocky semantic logits, a heatmap of Gaussian bumps and noisy offsets."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, NUM_CLASSES, max(1, h // 8), max(1, w // 8), generator=g) * 3
    logits = F.interpolate(coarse, size=(h, w), mode="nearest") + torch.randn(n, NUM_CLASSES, h, w, generator=g)
    ys = torch.arange(h, dtype=torch.float32).view(h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, w)
    center = torch.zeros(n, 1, h, w)
    for i in range(n):
        for _ in range(n_centers):
            cy, cx = torch.rand(2, generator=g) * torch.tensor([h, w])
            peak = torch.rand(1, generator=g).item()
            center[i, 0] = torch.maximum(center[i, 0], peak * torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / 8))
    center += 0.02 * torch.rand(n, 1, h, w, generator=g)
    offset = torch.randn(n, 2, h, w, generator=g) * offset_scale
    return logits, center, offset


def check_against_reference(logits, center, offset, cfg, device="cpu"):
    batch = panoptic_deeplab_postprocess(logits.to(device), center.to(device), offset.to(device), cfg=cfg)
    assert batch.id_map.dtype == torch.int32 and batch.id_map.device.type == device
    got = batch.id_map.cpu().numpy()
    n_things = 0
    for i in range(logits.shape[0]):
        want = reference(logits[i].numpy(), center[i, 0].numpy(), offset[i].numpy(), cfg)
        np.testing.assert_array_equal(got[i], want)
        n_things += int(((want > 0) & (want % 1000 > 0)).sum())
    return batch, n_things


SMALL = PostprocessConfig(stuff_area=200, reference_area=48 * 64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference(seed):
    logits, center, offset = random_heads(2, 48, 64, n_centers=10, seed=seed)
    batch, n_things = check_against_reference(logits, center, offset, SMALL)
    assert n_things > 0  # the inputs do exercise instances
    ids = batch.id_map.numpy()
    assert (ids == -1).any() and (ids % 1000 == 0).any()  # and void, and stuff


def test_nms_kernel_and_small_top_k_follow_detectron2():
    logits, center, offset = random_heads(2, 40, 56, n_centers=12, seed=3)
    for cfg in (PostprocessConfig(nms_kernel=3, top_k=4, stuff_area=150, reference_area=40 * 56),
                PostprocessConfig(nms_kernel=7, top_k=200, stuff_area=0)):
        check_against_reference(logits, center, offset, cfg)
    # More candidates than top_k: detectron2 keeps those strictly above the k-th score.
    keep = find_instance_centers(center, 0.1, 3, 4)
    assert (keep.sum(1) <= 3).all()


@pytest.mark.parametrize("k", [1, 3, 7])
def test_max_filter_is_max_pool(k):
    x = torch.randn(2, 1, 23, 31)
    torch.testing.assert_close(max_filter(x, k), F.max_pool2d(x, k, stride=1, padding=(k - 1) // 2),
                               rtol=0, atol=0)
    with pytest.raises(ValueError):
        PostprocessConfig(nms_kernel=4)


def test_no_centers_leaves_things_void():
    logits, center, offset = random_heads(1, 32, 32, seed=4)
    batch, n_things = check_against_reference(logits, torch.zeros_like(center), offset, SMALL)
    assert n_things == 0 and batch.centers[0].shape == (0, 2)
    thing = np.isin(logits.argmax(1).numpy(), THING_TRAIN_IDS)
    assert (batch.id_map.numpy()[thing] == -1).all()


def test_upsampling_matches_reference_on_resized_heads():
    # Stride-4 heads with offsets in input pixels, post-processed at the input resolution.
    logits, center, offset = random_heads(1, 12, 16, n_centers=4, seed=5, offset_scale=8.0)
    cfg = PostprocessConfig(stuff_area=200, reference_area=48 * 64)
    batch = panoptic_deeplab_postprocess(logits, center, offset, input_size=(48, 64), cfg=cfg)
    up = [F.interpolate(t, size=(48, 64), mode="bilinear", align_corners=False) for t in (logits, center, offset)]
    want = reference(up[0][0].numpy(), up[1][0, 0].numpy(), up[2][0].numpy(), cfg)
    np.testing.assert_array_equal(batch.id_map[0].numpy(), want)
    # On the heads' grid, offsets are rescaled to grid pixels.
    coarse_cfg = PostprocessConfig(stuff_area=200, reference_area=48 * 64, upsample=False)
    coarse = panoptic_deeplab_postprocess(logits, center, offset, input_size=(48, 64), cfg=coarse_cfg)
    assert coarse.id_map.shape == (1, 12, 16)
    want = reference(logits[0].numpy(), center[0, 0].numpy(), (offset[0] / 4).numpy(), coarse_cfg)
    np.testing.assert_array_equal(coarse.id_map[0].numpy(), want)


def test_results_are_panoptic_results_with_confidence():
    logits, center, offset = random_heads(2, 32, 48, seed=6)
    batch = panoptic_deeplab_postprocess(logits, center, offset, cfg=SMALL)
    results = batch.results()
    assert len(results) == 2 and all(isinstance(r, PanopticResult) for r in results)
    prob = torch.softmax(logits, 1).max(1).values
    for i, r in enumerate(results):
        assert r.id_map.dtype == np.int32 and r.id_map.shape == (32, 48)
        np.testing.assert_allclose(r.confidence, prob[i].numpy(), rtol=1e-5)
        assert {s.id for s in r.segments} == set(np.unique(r.id_map).tolist()) - {-1}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("seed", [0, 7])
def test_cuda_matches_reference(seed):
    logits, center, offset = random_heads(2, 48, 64, n_centers=10, seed=seed)
    check_against_reference(logits, center, offset, SMALL, device="cuda")
