import numpy as np

from pisr_ros.data.augment import Augment, Sample, augment, random_crop, resize_sample, scaled_crop


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


def test_scaled_crop_equals_resize_then_crop():
    """The fused scale+crop computes only the crop, and gives the labels of resizing the whole
    image then cropping, exactly; the image within cv2's fixed-point rounding."""
    s = _sample(48, 96)
    for scaled, origin, crop in [((96, 192), (10, 37), (40, 64)), ((24, 48), (3, 5), (16, 32)),
                                 ((61, 123), (0, 0), (61, 123)), ((70, 150), (20, 40), (30, 50))]:
        ref = resize_sample(s, scaled)
        (y, x), (ch, cw) = origin, crop
        got = scaled_crop(s, scaled, origin, crop)
        assert np.array_equal(got.label_ids, ref.label_ids[y:y + ch, x:x + cw])
        assert np.array_equal(got.instance_ids, ref.instance_ids[y:y + ch, x:x + cw])
        diff = np.abs(got.image.astype(int) - ref.image[y:y + ch, x:x + cw].astype(int))
        assert diff.max() <= 2, (scaled, origin, diff.max())


def test_scaled_crop_pads_past_the_edge_with_void():
    s = _sample(20, 40)
    got = scaled_crop(s, (20, 40), (4, 8), (32, 48))
    assert np.array_equal(got.label_ids[:16, :32], s.label_ids[4:, 8:])
    assert (got.label_ids[16:] == 0).all() and (got.label_ids[:, 32:] == 0).all()
    assert (got.image[16:] == 0).all() and (got.image[:, 32:] == 0).all()
    assert _aligned(got)


def test_thing_crops_land_on_instances():
    """A single small person in a large void image: uniform crops rarely see it, thing crops always."""
    h, w = 200, 400
    label = np.full((h, w), 7, np.uint8)  # road
    inst = label.astype(np.int32)
    label[150:160, 350:356] = 24
    inst[150:160, 350:356] = 24001
    s = Sample(np.zeros((h, w, 3), np.uint8), label, inst)

    def hits(prob):
        aug = Augment(base_size=(h, w), crop_size=(40, 60), scale_range=(1.0, 1.0), thing_crop_prob=prob)
        return sum((augment(s, aug, np.random.default_rng(i))[0].instance_ids == 24001).any() for i in range(60))

    assert hits(1.0) == 60
    assert hits(0.0) < 20
