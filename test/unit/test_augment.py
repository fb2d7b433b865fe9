import numpy as np

from pisr_ros.data.augment import Augment, Sample, augment, random_crop, resize_sample


def _sample(h=40, w=80):
    rng = np.random.default_rng(0)
    label = rng.choice(np.array([7, 8, 24, 26], np.uint8), size=(h, w))
    inst = label.astype(np.int32) * 1000 + (label >= 24)  # things get instance 1
    inst[label < 24] = label[label < 24]
    return Sample(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), label, inst)


def _aligned(s: Sample) -> bool:
    derived = np.where(s.instance_ids >= 1000, s.instance_ids // 1000, s.instance_ids)
    return np.array_equal(derived, s.label_ids)


def test_resize_keeps_label_maps_aligned_and_invents_no_ids():
    s = _sample()
    for size in [(20, 40), (33, 71), (80, 160)]:
        r = resize_sample(s, size)
        assert r.image.shape == size + (3,) and r.label_ids.shape == size
        assert _aligned(r)
        assert set(np.unique(r.label_ids)) <= set(np.unique(s.label_ids))


def test_augment_returns_its_scale_and_crop_pads_with_void():
    s = _sample()
    aug = Augment(base_size=(40, 80), crop_size=(64, 128), scale_range=(0.5, 0.5), flip=True)
    out, scale = augment(s, aug, np.random.default_rng(1))
    assert scale == 0.5
    assert out.label_ids.shape == (64, 128) and _aligned(out)
    # A 20x40 image in a 64x128 crop: the rest is void (labelId 0).
    assert (out.label_ids == 0).sum() == 64 * 128 - 20 * 40
    c = random_crop(s, (10, 10), np.random.default_rng(2))
    assert c.image.shape == (10, 10, 3) and _aligned(c)
