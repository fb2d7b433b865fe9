"""The largest camera frame that reaches a node in one middleware message, and what the node
admits: the line the panoptic node logs once at start-up (docs/panoptic_node.md, "Limits").

Fast DDS sends a message larger than its transport's ``maxMessageSize`` as fragments; over
best effort a frame with one fragment missing is lost before the node sees it, so a frame the
node would admit, or refuse and count, must fit in one message. ``config/fastdds_large_data.xml``
is sized for that (a test keeps it so); this module reads whichever profile the process uses.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

BYTES_PER_PIXEL_MAX = 4  # bgra8 / rgba8, the widest encoding the node reads
MESSAGE_OVERHEAD = 64 * 1024  # header, encoding, frame_id and RTPS headers, with room to spare


def largest_message(max_pixels: int) -> int:
    """Bytes of the largest raw frame the node admits with ``max_image_pixels`` = ``max_pixels``."""
    return max_pixels * BYTES_PER_PIXEL_MAX + MESSAGE_OVERHEAD


def shm_message_limit(profile: str | Path) -> int | None:
    """The shared-memory transport's ``maxMessageSize`` in a Fast DDS profile file (bytes), or
    None when it has no shared-memory transport with one (or cannot be read)."""
    try:
        root = ET.parse(profile).getroot()
    except (OSError, ET.ParseError):
        return None
    limits = []
    for descriptor in root.iter():
        if not descriptor.tag.endswith("transport_descriptor"):
            continue
        fields = {child.tag.rsplit("}", 1)[-1]: (child.text or "").strip() for child in descriptor}
        if fields.get("type", "").upper() == "SHM" and fields.get("maxMessageSize", "").isdigit():
            limits.append(int(fields["maxMessageSize"]))
    return max(limits) if limits else None


def mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def largest_frame_line(max_pixels: int, environ=None) -> tuple[bool, str]:
    """(whether the transport carries every admitted frame in one message, the start-up line)."""
    environ = os.environ if environ is None else environ
    profile = environ.get("FASTDDS_DEFAULT_PROFILES_FILE")
    admitted = largest_message(max_pixels)
    what = (f"largest frame admitted: {max_pixels} pixels (max_image_pixels), up to {mib(admitted)} "
            f"as bgra8/rgba8")
    if not profile:
        return False, (f"{what}; with Fast DDS's default transports (a 0.5 MB shared-memory segment) camera-sized "
                       "frames travel as fragments and over best effort are often lost before they arrive: set "
                       "FASTDDS_DEFAULT_PROFILES_FILE to config/fastdds_large_data.xml (docs/panoptic_node.md)")
    limit = shm_message_limit(profile)
    if limit is None:
        return True, f"{what}; the transport profile {profile} sets no shared-memory message size"
    if limit < admitted:
        return False, (f"{what}, but the transport profile {profile} carries {mib(limit)} in one message: larger "
                       f"frames travel as fragments and over best effort may be lost before they arrive; "
                       f"raise its maxMessageSize or lower max_image_pixels")
    return True, (f"{what}; the transport ({profile}) carries up to {mib(limit)} in one message, "
                  f"so larger frames up to that size arrive and are refused as too_large")
