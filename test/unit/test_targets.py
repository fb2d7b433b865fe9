import numpy as np
import pytest
import torch

from pisr_ros.data.targets import TargetConfig, collate_targets, make_targets
from pisr_ros.taxonomy import by_name

ROAD = by_name("road")
CAR = by_name("car")
PERSON = by_name("person")
CARAVAN_LABEL_ID = 29  # has instances in Cityscapes but no training class


def scene(h=96, w=128):
    """A road with two cars, a person, a crowd of cars, a caravan and some unlabeled pixels."""
    inst = np.full((h, w), ROAD.label_id, np.int32)
    inst[10:40, 10:50] = CAR.label_id * 1000 + 0  # car instance k=0 (Cityscapes counts from 0)
    inst[50:90, 60:70] = PERSON.label_id * 1000 + 3
    inst[60:70, 80:120] = CAR.label_id * 1000 + 1
    inst[75:85, 100:110] = CAR.label_id * 1000 + 1  # second part of the same car: one mask
    inst[0:8, 100:128] = CAR.label_id  # crowd ("car group")
    inst[88:96, 0:20] = CARAVAN_LABEL_ID * 1000 + 2
    inst[0:5, 0:5] = 0  # unlabeled
    return inst


def test_semantic_and_weights():
    inst = scene()
    t = make_targets(inst)
    sem = t["semantic"]
    assert sem.dtype == np.uint8 and sem.shape == inst.shape
    assert sem[20, 20] == CAR.train_id and sem[60, 65] == PERSON.train_id and sem[50, 5] == ROAD.train_id
    assert sem[2, 110] == CAR.train_id  # crowd keeps its class in the semantic target
    assert sem[90, 5] == 255 and sem[2, 2] == 255  # caravan and unlabeled are void
    # centers weigh every labelled pixel except crowd; offsets only instance pixels.
    cw, ow = t["center_weights"][0], t["offset_weights"][0]
    assert cw[50, 5] == 1 and cw[20, 20] == 1 and cw[2, 110] == 0 and cw[2, 2] == 0 and cw[90, 5] == 0
    assert ow[20, 20] == 1 and ow[50, 5] == 0 and ow[2, 110] == 0 and ow[90, 5] == 0
    # Every instance here is under 4096 px, so its pixels weigh 3; the rest weigh 1.
    sw = t["semantic_weights"]
    assert sw[20, 20] == 3 and sw[60, 65] == 3 and sw[50, 5] == 1 and sw[2, 110] == 1


def test_small_instance_threshold_scales_with_resolution():
    inst = np.full((200, 200), ROAD.label_id, np.int32)
    inst[0:50, 0:100] = CAR.label_id * 1000 + 1  # 5000 px
    inst[100:130, 0:100] = CAR.label_id * 1000 + 2  # 3000 px
    full = make_targets(inst)["semantic_weights"]
    assert full[10, 10] == 1 and full[110, 10] == 3
    half = make_targets(inst, scale=0.5)["semantic_weights"]  # threshold 1024 px
    assert half[10, 10] == 1 and half[110, 10] == 1
    custom = make_targets(inst, cfg=TargetConfig(small_instance_area=6000, small_instance_weight=2.0))
    assert custom["semantic_weights"][10, 10] == 2


def test_centers_at_mask_means_and_offsets_point_to_them():
    inst = scene()
    t = make_targets(inst, cfg=TargetConfig(sigma=2.0))
    center, offset = t["center"][0], t["offset"]
    for value in (CAR.label_id * 1000, PERSON.label_id * 1000 + 3, CAR.label_id * 1000 + 1):
        ys, xs = np.nonzero(inst == value)
        cy, cx = ys.mean(), xs.mean()
        # Offsets from each pixel land on the mask mean exactly.
        np.testing.assert_allclose(ys + offset[0, ys, xs], cy, atol=1e-4)
        np.testing.assert_allclose(xs + offset[1, ys, xs], cx, atol=1e-4)
        # The heatmap peaks (value 1) at the rounded mean.
        ry, rx = int(round(cy)), int(round(cx))
        assert center[ry, rx] == pytest.approx(1.0)
        assert center[ry, rx + 1] == pytest.approx(np.exp(-1 / (2 * 2.0**2)))
    # No center for crowd, caravan or stuff: exactly three peaks of 1.
    assert np.isclose(center, 1.0).sum() == 3
    assert (offset[:, t["offset_weights"][0] == 0] == 0).all()


def test_gaussian_window_and_overlap_max():
    inst = np.full((64, 64), ROAD.label_id, np.int32)
    inst[30:33, 30:33] = CAR.label_id * 1000 + 1  # mean (31, 31)
    t = make_targets(inst)  # sigma 8: window radius 25
    c = t["center"][0]
    assert c[31, 31] == pytest.approx(1.0)
    assert c[31, 31 + 25] == pytest.approx(np.exp(-625 / 128), rel=1e-5) and c[31, 31 + 26] == 0
    inst[30:33, 40:43] = CAR.label_id * 1000 + 2
    c2 = make_targets(inst)["center"][0]
    # Centers at x = 31 and 41: each pixel takes the nearer bump (the max), not their sum.
    for x, d in ((35, 4), (36, 5), (37, 4), (41, 0)):
        assert c2[31, x] == pytest.approx(np.exp(-d * d / 128), rel=1e-6)


def test_label_ids_given_and_collate():
    inst = scene()
    label_ids = np.where(inst >= 1000, inst // 1000, inst).astype(np.uint8)
    a, b = make_targets(inst, label_ids), make_targets(inst)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    batch = collate_targets([a, b])
    assert batch["semantic"].dtype == torch.int64 and batch["semantic"].shape == (2, 96, 128)
    assert batch["center"].shape == (2, 1, 96, 128) and batch["offset"].shape == (2, 2, 96, 128)
    with pytest.raises(ValueError):
        make_targets(inst, label_ids[:10])
