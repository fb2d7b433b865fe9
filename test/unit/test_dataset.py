"""CityscapesPanoptic: shapes, dtypes, targets that agree with the label files, determinism."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from pisr_ros.data import synth
from pisr_ros.data.dataset import CityscapesPanoptic, collate
from pisr_ros.data.targets import make_targets
from pisr_ros.errors import UsageError
from pisr_ros.taxonomy import IS_THING, LABEL_TO_TRAIN
from pisr_ros.training.sampler import IterationBatchSampler

SIZE = (64, 128)  # files on disk
INPUT = (32, 64)  # the model's input size: the files are resized to it
CROP = (32, 48)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cs")
    synth.generate(root, "train", 3, SIZE, seed=5, workers=1)
    return root


def test_eval_items_are_the_label_files_resized(root):
    ds = CityscapesPanoptic(root, "train", INPUT, train=False)
    assert len(ds) == 3
    item = ds[1]
    assert item["image"].shape == (3, *INPUT) and item["image"].dtype == np.uint8
    paths = ds.paths(1)
    labels = np.array(Image.open(paths.label_ids))
    inst = np.array(Image.open(paths.instance_ids)).astype(np.int64)
    # Halving by nearest neighbour at pixel centres picks the bottom-right pixel of each 2x2 block.
    small_labels, small_inst = labels[1::2, 1::2], inst[1::2, 1::2]
    assert np.array_equal(item["semantic"], LABEL_TO_TRAIN[small_labels])
    expect = make_targets(small_inst, small_labels, scale=INPUT[0] / 1024)
    for k, v in expect.items():
        np.testing.assert_allclose(item[k], v, err_msg=k)


def test_train_items_are_crops_with_consistent_targets(root):
    ds = CityscapesPanoptic(root, "train", INPUT, CROP, train=True, seed=1)
    for key in [(0, 0), (1, 5), (2, 9), 2]:
        item = ds[key]
        assert item["image"].shape == (3, *CROP) and item["image"].dtype == np.uint8
        sem = item["semantic"]
        assert sem.shape == CROP and sem.dtype == np.uint8
        assert set(np.unique(sem).tolist()) <= set(range(19)) | {255}
        assert item["center"].shape == (1, *CROP) and item["offset"].shape == (2, *CROP)
        # Offsets live only on thing pixels, and point inside the crop's reach.
        on = item["offset_weights"][0] > 0
        thing = np.zeros_like(on)
        thing[sem != 255] = IS_THING[sem[sem != 255]]
        assert not (on & ~thing).any()
        assert (item["offset"][:, ~on] == 0).all()
        assert 0 <= item["center"].min() and item["center"].max() <= 1


def test_augmentation_is_a_function_of_the_key(root):
    ds = CityscapesPanoptic(root, "train", INPUT, CROP, train=True, seed=1)
    a, b = ds[(0, 3)], ds[(0, 3)]
    assert all(np.array_equal(a[k], b[k]) for k in a)
    draws = [ds[(0, p)]["image"] for p in range(6)]
    assert any(not np.array_equal(draws[0], d) for d in draws[1:])


def test_collate_and_loader(root):
    ds = CityscapesPanoptic(root, "train", INPUT, CROP, train=True)
    sampler = IterationBatchSampler(len(ds), 2, seed=0, start=0, stop=2)
    batches = list(DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=0))
    assert len(batches) == 2
    batch = batches[0]
    assert batch["image"].shape == (2, 3, *CROP) and batch["image"].dtype == torch.uint8
    assert batch["semantic"].dtype == torch.int64 and batch["semantic"].shape == (2, *CROP)
    assert batch["center"].shape == (2, 1, *CROP) and batch["offset"].shape == (2, 2, *CROP)
    assert batch["index"].tolist() == [k[0] for k in sampler.batch_keys(0)]


def test_sampler_shards_epochs_and_resumes():
    full = IterationBatchSampler(5, 2, seed=3, start=0, stop=10)
    keys = [k for batch in full for k in batch]
    # Every epoch (5 consecutive draws) is a permutation; positions number the draws.
    assert [p for _, p in keys] == list(range(20))
    for e in range(4):
        assert sorted(i for i, _ in keys[5 * e:5 * e + 5]) == list(range(5))
    assert list(IterationBatchSampler(5, 2, seed=3, start=4, stop=10)) == list(full)[4:]
    ranks = [list(IterationBatchSampler(5, 1, seed=3, start=0, stop=10, rank=r, world_size=2)) for r in (0, 1)]
    assert [b for pair in zip(*ranks) for b in pair] == [[k] for k in keys]


def test_missing_split_says_how_to_make_one(tmp_path):
    with pytest.raises(UsageError, match="pisr-ros synth"):
        CityscapesPanoptic(tmp_path, "train", INPUT)
