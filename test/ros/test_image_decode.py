"""Image messages -> numpy with cv_bridge's encoding semantics (no DDS needed, but ROS messages)."""
import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from pisr_ros.image_decode import MalformedImage, compressed_to_array, image_to_array

MAX = 1 << 24
RNG = np.random.default_rng(0)
BGR = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


def _msg(array, encoding, pad=0):
    h, w = array.shape[:2]
    rows = array.reshape(h, -1)
    padded = np.zeros((h, rows.shape[1] + pad), np.uint8)
    padded[:, : rows.shape[1]] = rows
    return Image(height=h, width=w, encoding=encoding, step=padded.shape[1], data=padded.tobytes())


@pytest.mark.parametrize("pad", [0, 3])
def test_every_encoding_gives_the_colour_image_it_holds(pad):
    img, order = image_to_array(_msg(BGR, "bgr8", pad), MAX)
    assert order == "bgr" and np.array_equal(img, BGR)
    rgb = np.ascontiguousarray(BGR[..., ::-1])
    img, order = image_to_array(_msg(rgb, "rgb8", pad), MAX)
    assert order == "rgb" and np.array_equal(img, rgb)
    bgra = np.concatenate([BGR, np.full((5, 7, 1), 9, np.uint8)], axis=2)
    img, order = image_to_array(_msg(bgra, "bgra8", pad), MAX)
    assert order == "bgr" and np.array_equal(img, BGR)  # alpha dropped
    rgba = np.concatenate([rgb, np.full((5, 7, 1), 9, np.uint8)], axis=2)
    img, order = image_to_array(_msg(rgba, "rgba8", pad), MAX)
    assert order == "rgb" and np.array_equal(img, rgb)
    gray = BGR[..., 0].copy()
    img, order = image_to_array(_msg(gray, "mono8", pad), MAX)
    assert img.shape == (5, 7, 3) and all(np.array_equal(img[..., c], gray) for c in range(3))


def test_compressed_png_is_exact_and_jpeg_close():
    # A smooth picture whose three channels differ (JPEG keeps such a picture within a few
    # levels; swapped channels or a wrong size would be far off).
    y, x = np.mgrid[0:48, 0:64]
    smooth = np.stack([x * 4, y * 5, 255 - x * 2 - y], axis=2).astype(np.uint8)
    for fmt, ext in (("png", ".png"), ("jpeg", ".jpg"), ("bgr8; jpeg compressed bgr8", ".jpg")):
        for original in (BGR, smooth):
            msg = CompressedImage(format=fmt, data=cv2.imencode(ext, original)[1].tobytes())
            img, order = compressed_to_array(msg, MAX)
            assert order == "bgr" and img.shape == original.shape and img.dtype == np.uint8
            error = np.abs(img.astype(int) - original.astype(int))
            if ext == ".png":
                assert not error.any()
            elif original is smooth:
                assert error.mean() < 2.0 and error.max() < 16, (fmt, error.mean(), error.max())


@pytest.mark.parametrize("change, reason", [
    ({"encoding": "16UC1"}, "encoding"), ({"step": 20}, "step"), ({"data": bytes(10)}, "truncated"),
    ({"height": 0}, "empty"), ({"height": 5000, "width": 5000, "step": 15000}, "too_large"),
])
def test_malformed_raw_images_are_refused_with_their_reason(change, reason):
    msg = _msg(BGR, "bgr8")
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(MalformedImage) as err:
        image_to_array(msg, MAX)
    assert err.value.reason == reason


def test_malformed_compressed_images_are_refused_with_their_reason():
    for msg, reason in ((CompressedImage(format="tiff", data=b"x"), "format"),
                        (CompressedImage(format="jpeg", data=b""), "empty"),
                        (CompressedImage(format="jpeg", data=b"\xff\xd8" + bytes(100)), "corrupt"),
                        # a valid TIFF: cv2 would decode it, but only JPEG and PNG are read
                        (CompressedImage(format="jpeg", data=cv2.imencode(".tiff", BGR)[1].tobytes()), "corrupt"),
                        # a real JPEG that declares more pixels than allowed
                        (CompressedImage(format="jpeg", data=cv2.imencode(".jpg", BGR)[1].tobytes()), "too_large")):
        with pytest.raises(MalformedImage) as err:
            compressed_to_array(msg, MAX if reason != "too_large" else 5 * 7 - 1)
        assert err.value.reason == reason
