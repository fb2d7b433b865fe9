"""The declared size of JPEGs and PNGs, checked against what cv2 decodes from the same bytes."""
import struct
import zlib

import cv2
import numpy as np
import pytest

from pisr_ros.image_header import HeaderError, declared_size

RNG = np.random.default_rng(3)


def _images():
    """(name, encoded bytes) for a spread of sizes, channel counts and encoder options."""
    out = []
    for h, w in ((1, 1), (5, 7), (17, 300), (480, 640), (1031, 65)):
        bgr = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
        out.append((f"jpeg {w}x{h}", cv2.imencode(".jpg", bgr)[1].tobytes()))
        out.append((f"progressive jpeg {w}x{h}",
                    cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()))
        out.append((f"optimized jpeg {w}x{h}", cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_OPTIMIZE, 1])[1].tobytes()))
        out.append((f"grey jpeg {w}x{h}", cv2.imencode(".jpg", bgr[..., 0])[1].tobytes()))
        out.append((f"png {w}x{h}", cv2.imencode(".png", bgr)[1].tobytes()))
        out.append((f"grey png {w}x{h}", cv2.imencode(".png", bgr[..., 0])[1].tobytes()))
        bgra = np.concatenate([bgr, bgr[..., :1]], axis=2)
        out.append((f"bgra png {w}x{h}", cv2.imencode(".png", bgra)[1].tobytes()))
        out.append((f"16-bit png {w}x{h}", cv2.imencode(".png", bgr.astype(np.uint16) * 257)[1].tobytes()))
    return out


def _with_extra_segments(jpeg: bytes) -> bytes:
    """The same JPEG with a comment, an APP segment that holds FF bytes and SOF-like codes,
    and fill bytes before a marker: all legal, all to be skipped by length."""
    comment = b"\xff\xfe" + struct.pack(">H", 2 + 12) + b"hello \xff\xc0 jpeg"[:12]
    app = b"\xff\xe5" + struct.pack(">H", 2 + 9) + b"\xff\xc0\x00\x11\x00\x22\x00\x33\x03"
    return jpeg[:2] + comment + app + b"\xff\xff\xff" + jpeg[2:]


IMAGES = _images()


@pytest.mark.parametrize("name, data", IMAGES, ids=[n for n, _ in IMAGES])
def test_declared_size_is_what_cv2_decodes(name, data):
    kind, w, h = declared_size(data)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert (h, w) == decoded.shape[:2] and kind == name.split()[-2]


def test_segments_before_the_frame_header_are_skipped():
    bgr = RNG.integers(0, 256, (33, 44, 3), dtype=np.uint8)
    data = _with_extra_segments(cv2.imencode(".jpg", bgr)[1].tobytes())
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape[:2] == (33, 44)  # cv2 agrees the file is valid
    assert declared_size(data) == ("jpeg", 44, 33)


def test_a_bomb_declares_its_size_in_a_few_hundred_bytes():
    small = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    bomb = jpeg_declaring(small, 20000, 20000)
    assert len(bomb) < 1000 and declared_size(bomb) == ("jpeg", 20000, 20000)
    png = png_declaring(12000, 12000)
    assert len(png) < 200_000 and declared_size(png) == ("png", 12000, 12000)


@pytest.mark.parametrize("data", [
    b"", b"\xff", b"\xff\xd8", b"\xff\xd8\xff", b"\xff\xd8\x00\x00", b"GIF89a" + bytes(20),
    b"\xff\xd8\xff\xe0\x00", b"\xff\xd8\xff\xe0\x00\x01", b"\xff\xd8\xff\xda\x00\x08" + bytes(6),
    b"\xff\xd8\xff\xc0\x00\x11\x08\x00",  # frame header cut short
    b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x00\x00\x10\x03" + bytes(9),  # height 0 (DNL)
    b"\x89PNG\r\n\x1a\n" + bytes(10),
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIDAT" + bytes(8),
])
def test_what_is_not_a_sized_jpeg_or_png_is_refused(data):
    with pytest.raises(HeaderError):
        declared_size(data)


def test_every_truncation_gives_the_size_or_a_refusal():
    """Cut anywhere, a real file's header gives its true size or HeaderError, never another size."""
    for name, data in IMAGES[::5]:
        _, w, h = declared_size(data)
        for cut in range(0, min(len(data), 700)):
            try:
                assert declared_size(data[:cut])[1:] == (w, h), (name, cut)
            except HeaderError:
                pass


def jpeg_declaring(jpeg: bytes, width: int, height: int) -> bytes:
    """A real JPEG whose frame header is rewritten to claim ``width`` x ``height``."""
    pos = 2
    while True:
        marker = jpeg[pos + 1]
        length = struct.unpack(">H", jpeg[pos + 2:pos + 4])[0]
        if marker == 0xC0:
            return jpeg[:pos + 5] + struct.pack(">HH", height, width) + jpeg[pos + 9:]
        pos += 2 + length


def png_declaring(width: int, height: int) -> bytes:
    """A PNG (grey, 8 bit) whose every row is zero: compresses ~1000:1."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# What a decode-bomb costs the decoding process, measured in a fresh interpreter: its peak
# resident memory (VmHWM) after decoding one normal frame, then after being handed the bomb.
PEAK_SCRIPT = r"""
import json, sys
from types import SimpleNamespace
import cv2
from pisr_ros.image_decode import MalformedImage, compressed_to_array

def peak_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

calls = []
real_imdecode = cv2.imdecode
cv2.imdecode = lambda *a: calls.append(1) or real_imdecode(*a)
normal, bomb = (open(p, "rb").read() for p in sys.argv[1:3])
max_pixels = int(sys.argv[3])
image, _ = compressed_to_array(SimpleNamespace(format="jpeg", data=normal), max_pixels)
before, normal_calls = peak_kib(), len(calls)
try:
    compressed_to_array(SimpleNamespace(format=sys.argv[4], data=bomb), max_pixels)
    reason = None
except MalformedImage as exc:
    reason = exc.reason
print(json.dumps({"frame_bytes": image.nbytes, "grew_kib": peak_kib() - before, "reason": reason,
                  "imdecode_calls_for_the_bomb": len(calls) - normal_calls}))
"""


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_a_decode_bomb_is_refused_before_it_costs_memory(tmp_path, kind):
    import json
    import subprocess
    import sys

    frame = cv2.imencode(".jpg", RNG.integers(0, 256, (1024, 2048, 3), dtype=np.uint8))[1].tobytes()
    if kind == "jpeg":  # the probe of issue 18: ~600 bytes claiming 20000x20000
        bomb = jpeg_declaring(cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes(), 20000, 20000)
    else:  # 12000x12000 zeros, ~140 KB
        bomb = png_declaring(12000, 12000)
    (tmp_path / "frame").write_bytes(frame)
    (tmp_path / "bomb").write_bytes(bomb)
    done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(tmp_path / "frame"), str(tmp_path / "bomb"),
                           str(16_777_216), kind], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["reason"] == "too_large", got
    assert got["imdecode_calls_for_the_bomb"] == 0, got
    # Within one normal frame's working set (a 1024x2048 BGR frame, 6 MiB): nothing was decoded.
    assert got["grew_kib"] * 1024 < got["frame_bytes"], got
