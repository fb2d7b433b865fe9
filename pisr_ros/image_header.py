"""The width and height a JPEG or PNG declares, read from its header without decoding it.

A compressed image can claim any size: a few hundred bytes of JPEG can declare 20000x20000
pixels, and a decoder allocates (and for JPEG fills) the whole bitmap before it notices that
the data is short. Reading the declared size first lets a caller refuse such an image at the
cost of a few header bytes (``image_decode.compressed_to_array``).

Only the layout needed to find the size is read: PNG's IHDR chunk (it must come first), and
JPEG's marker segments up to the first start-of-frame (SOF) marker.
"""
from __future__ import annotations

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
# SOF0-3, 5-7, 9-11, 13-15 (baseline, extended, progressive, lossless, hierarchical,
# arithmetic). 0xC4 (DHT), 0xC8 (JPG, reserved) and 0xCC (DAC) share the range but are not frames.
JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
JPEG_SOS = 0xDA
# Markers without a length field: TEM, RST0-7, SOI, EOI.
JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xDA)})


class HeaderError(ValueError):
    """The data is not a JPEG or PNG whose header states its size."""


def declared_size(data: bytes | bytearray | memoryview) -> tuple[str, int, int]:
    """("jpeg" or "png", width, height) as the header declares them; ``HeaderError`` if the
    data is neither format or its header is cut short or inconsistent."""
    data = memoryview(data).cast("B")
    if bytes(data[:8]) == PNG_SIGNATURE:
        return ("png", *_png_size(data))
    if bytes(data[:2]) == JPEG_SOI:
        return ("jpeg", *_jpeg_size(data))
    raise HeaderError("neither a JPEG (FF D8) nor a PNG signature")


def _png_size(data: memoryview) -> tuple[int, int]:
    # signature (8), then the first chunk: length (4) = 13, type "IHDR", width (4), height (4).
    if len(data) < 24:
        raise HeaderError(f"PNG cut short: {len(data)} bytes, no IHDR")
    if bytes(data[12:16]) != b"IHDR" or int.from_bytes(data[8:12], "big") != 13:
        raise HeaderError("PNG whose first chunk is not a 13-byte IHDR")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if width == 0 or height == 0:
        raise HeaderError(f"PNG declares {width}x{height}")
    return width, height


def _jpeg_size(data: memoryview) -> tuple[int, int]:
    pos, end = 2, len(data)
    while True:
        # A marker is FF followed by its code; any number of FF fill bytes may precede it.
        if pos >= end or data[pos] != 0xFF:
            raise HeaderError(f"JPEG: no marker at byte {pos} before a frame header")
        while pos < end and data[pos] == 0xFF:
            pos += 1
        if pos >= end:
            raise HeaderError("JPEG cut short before a frame header")
        marker = data[pos]
        pos += 1
        if marker in JPEG_STANDALONE:
            continue
        if pos + 2 > end:
            raise HeaderError("JPEG cut short inside a segment length")
        length = int.from_bytes(data[pos:pos + 2], "big")  # counts its own two bytes
        if length < 2:
            raise HeaderError(f"JPEG segment of length {length} at byte {pos}")
        if marker in JPEG_SOF:
            # precision (1), height (2), width (2), components (1)
            if length < 8 or pos + 7 > end:
                raise HeaderError("JPEG frame header cut short")
            height = int.from_bytes(data[pos + 3:pos + 5], "big")
            width = int.from_bytes(data[pos + 5:pos + 7], "big")
            if width == 0 or height == 0:
                # Height 0 means "given later by a DNL marker", which the decoder does not support.
                raise HeaderError(f"JPEG declares {width}x{height}")
            return width, height
        if marker == JPEG_SOS:
            raise HeaderError("JPEG scan data before any frame header")
        pos += length
