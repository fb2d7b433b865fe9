"""The compiled pixel pass of the evaluator (panoptic_png + pair_kernel) against plain numpy.

PNGs are written here with a chosen filter type per row (the filters are applied in numpy,
which is easy in that direction), so that every PNG filter, RGB and RGBA, is decoded by the
kernel and compared with the pixels that went in, and with OpenCV's reading of the same file.
"""
from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from pisr_ros.evaluation import panoptic_png
from pisr_ros.evaluation import panoptic_quality as pq

pytestmark = pytest.mark.skipif(not panoptic_png.available(), reason="llvmlite is not installed")


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    a, b, c = (v.astype(np.int32) for v in (a, b, c))
    pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def filter_rows(img: np.ndarray, kinds: list[int]) -> bytes:
    """The PNG scanlines of ``img`` (HxWxC uint8), row y filtered with ``kinds[y]``."""
    h, w, ch = img.shape
    rows = img.reshape(h, w * ch).astype(np.int32)
    out = []
    for y, kind in enumerate(kinds):
        x = rows[y]
        up = rows[y - 1] if y else np.zeros_like(x)
        left = np.concatenate([np.zeros(ch, np.int32), x[:-ch]])
        up_left = np.concatenate([np.zeros(ch, np.int32), up[:-ch]])
        pred = {0: 0, 1: left, 2: up, 3: (left + up) // 2, 4: _paeth(left, up, up_left)}[kind]
        out.append(bytes([kind]) + ((x - pred) % 256).astype(np.uint8).tobytes())
    return b"".join(out)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def write_filtered_png(path, img: np.ndarray, kinds: list[int], idat_parts: int = 1) -> None:
    h, w, ch = img.shape
    header = struct.pack(">IIBBBBB", w, h, 8, {3: 2, 4: 6}[ch], 0, 0, 0)
    data = zlib.compress(filter_rows(img, kinds))
    step = -(-len(data) // idat_parts)
    idat = b"".join(_chunk(b"IDAT", data[i : i + step]) for i in range(0, len(data), step))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + idat + _chunk(b"IEND", b""))


def label_image(rng, h: int, w: int, n_ids: int, ids: np.ndarray | None = None) -> np.ndarray:
    """Blocky ids (like a label image, so the kernel's shortcuts are taken) with noise pixels
    (so that they are not always)."""
    ids = rng.integers(0, 2**24, n_ids) if ids is None else ids
    cells = rng.integers(0, len(ids), (h // 4 + 1, w // 8 + 1))
    out = ids[np.kron(cells, np.ones((4, 8), np.int64))[:h, :w]]
    noise = rng.random((h, w)) < 0.05
    out[noise] = ids[rng.integers(0, len(ids), noise.sum())]
    return out


def to_rgb(ids: np.ndarray, alpha: bool, rng) -> np.ndarray:
    planes = [ids % 256, ids // 256 % 256, ids // 65536]
    if alpha:
        planes.append(rng.integers(0, 256, ids.shape))  # ignored, as by the reference
    return np.stack(planes, axis=-1).astype(np.uint8)


def reference_histogram(gt: np.ndarray, pred: np.ndarray, gt_keys: np.ndarray, pred_keys: np.ndarray) -> np.ndarray:
    n_gt, n_pred = len(gt_keys) + 1, len(pred_keys) + 1
    gi = np.where(np.isin(gt, gt_keys), np.searchsorted(gt_keys, gt), len(gt_keys))
    pi = np.where(np.isin(pred, pred_keys), np.searchsorted(pred_keys, pred), len(pred_keys))
    return np.bincount((gi * n_pred + pi).ravel(), minlength=n_gt * n_pred).reshape(n_gt, n_pred)


@pytest.mark.parametrize("alpha", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_every_filter_type_decodes_to_the_pixels_written(tmp_path, seed, alpha):
    rng = np.random.default_rng(seed)
    h, w = 37, 53
    gt_ids = label_image(rng, h, w, 12)
    pred_ids = label_image(rng, h, w, 9)
    paths = []
    for name, ids in (("gt", gt_ids), ("pred", pred_ids)):
        kinds = list(rng.integers(0, 5, h))
        kinds[:5] = [0, 1, 2, 3, 4]
        path = tmp_path / f"{name}.png"
        write_filtered_png(path, to_rgb(ids, alpha, rng), kinds, idat_parts=int(rng.integers(1, 4)))
        paths.append(str(path))
        assert np.array_equal(pq.read_panoptic_png(str(path)), ids)  # OpenCV agrees with the file
    # Keys: some ids of each image missing (the "other" bucket), some keys absent from the image.
    gt_keys = np.unique(np.concatenate([rng.choice(np.unique(gt_ids), 8, replace=False), [0, 5]]))
    pred_keys = np.unique(np.concatenate([rng.choice(np.unique(pred_ids), 6, replace=False), [0]]))
    gt_px, pred_px = (panoptic_png.read_pixels(p) for p in paths)
    hist = panoptic_png.pair_histogram(
        gt_px, pred_px, panoptic_png.lookup_table(gt_keys), panoptic_png.lookup_table(pred_keys),
        len(gt_keys) + 1, len(pred_keys) + 1,
    )
    assert np.array_equal(hist, reference_histogram(gt_ids, pred_ids, gt_keys, pred_keys))


def test_ids_above_the_lookup_table_are_other(tmp_path):
    rng = np.random.default_rng(7)
    ids = label_image(rng, 16, 24, 6, ids=np.array([0, 3, 9, 2**24 - 1, 70000, 123]))
    path = tmp_path / "a.png"
    write_filtered_png(path, to_rgb(ids, False, rng), [4] * 16)
    px = panoptic_png.read_pixels(str(path))
    keys = np.array([0, 3, 9])  # table ends at 10; 70000 and 2^24 - 1 lie beyond it
    hist = panoptic_png.pair_histogram(px, px, panoptic_png.lookup_table(keys), panoptic_png.lookup_table(keys), 4, 4)
    assert np.array_equal(hist, reference_histogram(ids, ids, keys, keys))


def test_unknown_filter_type_is_refused(tmp_path):
    img = np.zeros((4, 5, 3), np.uint8)
    raw = bytearray(filter_rows(img, [0, 0, 0, 0]))
    raw[2 * (1 + 15)] = 5  # row 2: filter type 5 does not exist
    header = struct.pack(">IIBBBBB", 5, 4, 8, 2, 0, 0, 0)
    path = tmp_path / "bad.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(bytes(raw)))
                     + _chunk(b"IEND", b""))
    px = panoptic_png.read_pixels(str(path))
    keys = np.array([0])
    assert panoptic_png.pair_histogram(px, px, panoptic_png.lookup_table(keys), panoptic_png.lookup_table(keys), 2, 2) is None


@pytest.mark.parametrize("kind", ["palette", "gray", "16bit", "truncated", "not_png"])
def test_other_pngs_are_left_to_opencv(tmp_path, kind):
    path = tmp_path / "x.png"
    img = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    if kind == "palette":
        from PIL import Image

        Image.fromarray(img).convert("P").save(path)
    elif kind == "gray":
        cv2.imwrite(str(path), img[..., 0])
    elif kind == "16bit":
        cv2.imwrite(str(path), img.astype(np.uint16) * 200)
    elif kind == "truncated":
        cv2.imwrite(str(path), img)
        path.write_bytes(path.read_bytes()[:-20])
    else:
        path.write_bytes(b"GIF89a")
    assert panoptic_png.read_pixels(str(path)) is None


def test_compiled_and_numpy_paths_give_the_same_matrix(tmp_path):
    """The same pair through both paths of panoptic_quality (OpenCV-written PNGs)."""
    rng = np.random.default_rng(3)
    gt_ids = label_image(rng, 64, 96, 10, ids=np.arange(1, 11) * 1000 + 7)
    pred_ids = label_image(rng, 64, 96, 8, ids=np.arange(1, 9) * 1000 + 3)
    for name, ids in (("gt", gt_ids), ("pred", pred_ids)):
        cv2.imwrite(str(tmp_path / f"{name}.png"), to_rgb(ids, False, rng)[..., ::-1])
    gt_keys, pred_keys = np.unique(np.r_[0, gt_ids.ravel()]), np.unique(np.r_[0, pred_ids.ravel()])
    pair = pq.ImagePair("x", str(tmp_path / "gt.png"), str(tmp_path / "pred.png"), (), ())
    compiled = pq._pair_matrix_compiled(pair, gt_keys, pred_keys)
    assert compiled is not None
    assert np.array_equal(compiled, pq._pair_matrix_numpy(pair, gt_keys, pred_keys))


def test_kernel_cache_is_written_once_and_gives_the_same_kernel(tmp_path):
    from pisr_ros.evaluation import pair_kernel

    rng = np.random.default_rng(11)
    ids = label_image(rng, 24, 40, 7)
    path = tmp_path / "k.png"
    write_filtered_png(path, to_rgb(ids, False, rng), list(rng.integers(0, 5, 24)))
    px = panoptic_png.read_pixels(str(path))
    keys = np.unique(ids)
    lut = panoptic_png.lookup_table(keys)
    cache = tmp_path / "cache"
    results = []
    for _ in range(2):  # compiled and stored; then loaded from the cache
        kernel, engine = pair_kernel.compile_kernel(str(cache))
        hist = np.zeros((len(keys) + 1) ** 2, np.int64)
        rows = [np.zeros((2, 40), np.int32) for _ in range(2)]
        assert kernel(px.data, 3, px.data, 3, 24, 40, lut.ctypes.data, len(lut) - 1, lut.ctypes.data,
                      len(lut) - 1, len(keys) + 1, hist.ctypes.data, rows[0].ctypes.data, rows[1].ctypes.data)
        results.append(hist)
        assert len(list(cache.iterdir())) == 1
    assert np.array_equal(results[0], results[1])
    assert np.array_equal(results[0].reshape(len(keys) + 1, -1), reference_histogram(ids, ids, keys, keys))
