"""The pixel pass of panoptic evaluation: two panoptic PNGs in, their pair histogram out.

Decoding the two 1024x2048 PNGs of a frame with libpng (OpenCV) or libspng costs 15-25 ms each,
nearly all of the evaluator's time, and most of that is zlib's inflate. Here the PNG's pixel
data is inflated by zlib-ng (about 1 ms for such a PNG), and the compiled kernel of
:mod:`pair_kernel` undoes the PNG row filters of both images, turns each pixel's colour into
its segment's position through the caller's lookup tables and counts the (gt, prediction)
pairs, without ever holding a whole decoded image.

Only what the panoptic format needs takes this path: 8-bit RGB or RGBA, not interlaced.
Anything else (a palette or 16-bit PNG, a damaged file) gets None from :func:`read_pixels`,
and so does every file where llvmlite is missing; the caller then decodes with OpenCV.
"""
from __future__ import annotations

import struct
import sys
import threading
import zlib

import numpy as np

try:  # zlib-ng inflates these files about ten times faster than zlib
    from zlib_ng import zlib_ng as _inflate_lib
except ImportError:  # pragma: no cover - depends on the installation
    _inflate_lib = zlib

try:
    from pisr_ros.evaluation import pair_kernel
except ImportError:  # pragma: no cover - llvmlite is not installed
    pair_kernel = None

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour types the kernel reads, with their bytes per pixel (8-bit samples).
_CHANNELS = {2: 3, 6: 4}

_kernel = None  # (ctypes function, the LLVM engine that owns its code), or False: cannot compile
_kernel_lock = threading.Lock()


def available() -> bool:
    """Whether the compiled kernel can run here (llvmlite is installed and compiles it)."""
    return pair_kernel is not None and _kernel is not False


def compile_in_background() -> None:
    """Start compiling the kernel in a thread (LLVM works outside the GIL), so that it is ready
    when the first image is; a no-op where llvmlite is missing."""
    if available() and _kernel is None:
        threading.Thread(target=_compiled, name="pair-kernel-compile", daemon=True).start()


def _compiled():
    """The kernel, compiled once per process by the first thread that needs it; None if this
    llvmlite cannot build it (then every image takes the OpenCV path)."""
    global _kernel
    with _kernel_lock:
        if _kernel is None:
            try:
                _kernel = pair_kernel.compile_kernel()
            except Exception as exc:  # an llvmlite too old or too new for the IR: be slow, not wrong
                print(f"pisr_ros: compiled PNG kernel unavailable ({type(exc).__name__}: {exc}); "
                      "decoding with OpenCV", file=sys.stderr)
                _kernel = False
    return _kernel[0] if _kernel else None


class PngPixels:
    """The still-filtered pixel bytes of an 8-bit RGB(A) PNG (one filter byte per row)."""

    __slots__ = ("height", "width", "channels", "data")

    def __init__(self, height: int, width: int, channels: int, data: bytes) -> None:
        self.height, self.width, self.channels, self.data = height, width, channels, data


def read_pixels(path: str) -> PngPixels | None:
    """The inflated pixel data of ``path``; None if it is not a plain 8-bit RGB(A) PNG or
    cannot be read this way (the caller then decodes it with OpenCV, which says what is wrong)."""
    try:
        with open(path, "rb") as f:
            png = f.read()
    except OSError:
        return None
    if not png.startswith(_SIGNATURE):
        return None
    pos, end = len(_SIGNATURE), len(png)
    header = None
    idat: list[bytes] = []
    while pos + 8 <= end:
        length, kind = struct.unpack_from(">I4s", png, pos)
        body = png[pos + 8 : pos + 8 + length]
        pos += 12 + length  # length, type, body, CRC
        if pos > end:
            return None
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None or len(header) != 13 or not idat:
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    channels = _CHANNELS.get(colour)
    if depth != 8 or channels is None or interlace != 0 or width == 0 or height == 0:
        return None
    size = height * (1 + width * channels)
    try:
        data = _inflate_lib.decompress(b"".join(idat), bufsize=size)
    except zlib.error:
        return None
    if len(data) != size:
        return None
    return PngPixels(height, width, channels, data)


def lookup_table(keys: np.ndarray) -> np.ndarray:
    """Segment position of every id up to ``keys[-1]``, and ``len(keys)`` ("other") for any id
    not in ``keys``; the kernel sends ids above the table's end to its last entry, "other"."""
    lut = np.full(int(keys[-1]) + 2, len(keys), dtype=np.int32)
    lut[keys] = np.arange(len(keys), dtype=np.int32)
    return lut


def pair_histogram(
    gt: PngPixels, pred: PngPixels, gt_lut: np.ndarray, pred_lut: np.ndarray, n_gt: int, n_pred: int
) -> np.ndarray | None:
    """Pixel counts of every (gt position, prediction position) pair, an ``n_gt x n_pred`` int64
    matrix (positions as given by the lookup tables); None if a row has an unknown filter type
    or the kernel cannot be compiled here."""
    kernel = _compiled()
    if kernel is None:
        return None
    hist = np.zeros(n_gt * n_pred, dtype=np.int64)
    gt_rows = np.zeros((2, gt.width), dtype=np.int32)  # the row above the first is zeros
    pred_rows = np.zeros((2, gt.width), dtype=np.int32)
    gt_src = np.frombuffer(gt.data, np.uint8)
    pred_src = np.frombuffer(pred.data, np.uint8)
    ok = kernel(
        gt_src.ctypes.data, gt.channels, pred_src.ctypes.data, pred.channels, gt.height, gt.width,
        gt_lut.ctypes.data, len(gt_lut) - 1, pred_lut.ctypes.data, len(pred_lut) - 1, n_pred,
        hist.ctypes.data, gt_rows.ctypes.data, pred_rows.ctypes.data,
    )
    return hist.reshape(n_gt, n_pred) if ok else None
