import numpy as np
import pytest

from pisr_ros import panoptic as p


def test_encode_decode_convention():
    assert p.encode(13, 1) == 13001
    assert p.encode(0) == 0  # road stuff: 0, distinct from void
    assert p.decode(-1) == (255, 0)
    assert p.decode(18002) == (18, 2)
    tid, k = p.decode(np.array([[-1, 0, 13001, 10000]]))
    assert tid.tolist() == [[255, 0, 13, 10]] and k.tolist() == [[0, 0, 1, 0]]


@pytest.mark.parametrize(
    "train_id,k,match",
    [(13, 0, "thing classes need"), (0, 1, "stuff classes take"), (19, 0, "trainId out of range"), (13, 1000, "instance index")],
)
def test_encode_refuses_ids_outside_the_convention(train_id, k, match):
    with pytest.raises(ValueError, match=match):
        p.encode(train_id, k)


def _reference_segments(id_map, confidence):
    """Per-segment statistics by explicit loops over ids, as a check on the vectorised code."""
    out = []
    for seg_id in sorted(set(id_map.ravel().tolist()) - {-1}):
        ys, xs = np.nonzero(id_map == seg_id)
        out.append(
            (seg_id, len(ys), (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1),
             (xs.mean(), ys.mean()), confidence[ys, xs].mean())
        )
    return out


@pytest.mark.parametrize("seed", range(5))
def test_segments_match_a_loop_reference(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(5, 60, size=2)
    ids = np.array([-1, 0, 2000, 10000, 11001, 11002, 13001, 13007, 18001])
    id_map = rng.choice(ids[: rng.integers(2, len(ids) + 1)], size=(h, w)).astype(np.int32)
    conf = rng.random((h, w)).astype(np.float32)
    got = p.segments_of(id_map, conf)
    ref = _reference_segments(id_map, conf)
    assert [s.id for s in got] == [r[0] for r in ref]
    for s, (seg_id, area, bbox, centroid, score) in zip(got, ref):
        assert s.area == area and s.bbox == tuple(int(v) for v in bbox)
        assert s.centroid == pytest.approx(centroid, abs=1e-9)
        assert s.score == pytest.approx(score, rel=1e-6)
        assert s.class_id == seg_id // 1000 and s.is_thing == (seg_id // 1000 >= 11)


@pytest.mark.parametrize("seed", range(8))
def test_segments_of_a_resized_map_equal_those_of_the_resized_map(seed):
    """``size=`` computes on the small map what the resized map holds: up, down, non-integer."""
    rng = np.random.default_rng(100 + seed)
    h, w = rng.integers(3, 40, size=2)
    out = tuple(int(v) for v in rng.integers(2, 90, size=2)) if seed else (8 * h, 8 * w)
    ids = np.array([-1, 0, 2000, 11001, 11002, 13001, 13007, 18001])
    id_map = rng.choice(ids, size=(h, w)).astype(np.int32)
    conf = rng.random((h, w)).astype(np.float32)
    got = p.segments_of(id_map, conf, size=out)
    ref = p.segments_of(p.resize_nearest(id_map, out), p.resize_nearest(conf, out))
    assert [s.id for s in got] == [s.id for s in ref]
    for a, b in zip(got, ref):
        assert (a.area, a.bbox, a.is_thing) == (b.area, b.bbox, b.is_thing)
        assert a.centroid == pytest.approx(b.centroid, abs=1e-9)
        assert a.score == pytest.approx(b.score, rel=1e-6)


def test_resize_nearest_samples_pixel_centres():
    a = np.arange(12, dtype=np.int32).reshape(3, 4)
    up = p.resize_nearest(a, (6, 8))
    assert (up == np.repeat(np.repeat(a, 2, 0), 2, 1)).all()
    assert p.resize_nearest(up, (3, 4)).tolist() == a.tolist()
    assert p.resize_nearest(a, (3, 2)).tolist() == [[1, 3], [5, 7], [9, 11]]  # centres 1 and 3


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.float32])
@pytest.mark.parametrize("size", [(24, 32), (9, 32), (24, 5), (7, 13), (3, 32), (24, 4)])
def test_whole_number_upscaling_equals_centre_sampling(size, dtype):
    # resize_nearest widens rows and copies them when both factors are whole numbers; that
    # shortcut must sample exactly the pixel centres the general path samples.
    a = np.random.default_rng(0).integers(0, 250, (3, 4)).astype(dtype)
    rows = p.nearest_indices(3, size[0])[:, None]
    cols = p.nearest_indices(4, size[1])[None, :]
    assert np.array_equal(p.resize_nearest(a, size), a[rows, cols])


def test_result_checks_its_id_map_and_derives_semantics():
    with pytest.raises(ValueError, match="int32"):
        p.PanopticResult(np.zeros((4, 4), np.int64))
    r = p.PanopticResult(np.array([[-1, 13001], [0, 0]], np.int32))
    assert r.semantic.tolist() == [[255, 13], [0, 0]]
    assert [s.id for s in r.segments] == [0, 13001]


def test_cityscapes_panoptic_png_roundtrip():
    id_map = np.array([[-1, 13001, 13002], [0, 0, 10000]], np.int32)
    rgb, info = p.to_cityscapes_panoptic(id_map)
    png_ids = p.rgb_to_id(rgb)
    assert png_ids.tolist() == [[0, 26001, 26002], [7, 7, 23]]  # labelIds: car 26, road 7, sky 23
    assert {(i["id"], i["category_id"], i["area"]) for i in info} == {(26001, 26, 1), (26002, 26, 1), (7, 7, 2), (23, 23, 1)}


def test_segments_of_void_only_and_foreign_ids():
    assert p.segments_of(np.full((3, 4), -1, np.int32)) == []
    assert p.segments_of(np.zeros((0, 4), np.int32)) == []
    with pytest.raises(ValueError, match="outside -1..18999"):
        p.segments_of(np.array([[255000]], np.int32))  # the 255*1000 void some tools write
