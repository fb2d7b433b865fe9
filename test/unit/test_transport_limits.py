"""The transport profile carries every frame the panoptic node admits, in one message (issue 18:
frames above the old 32 MiB limit were lost over best effort and counted nowhere)."""
from pathlib import Path

from pisr_ros.ros.panoptic_params import PARAMS
from pisr_ros.ros.transport_limits import largest_frame_line, largest_message, shm_message_limit

PROFILE = Path(__file__).resolve().parents[2] / "config" / "fastdds_large_data.xml"
DEFAULT_MAX_PIXELS = next(p.default for p in PARAMS if p.name == "max_image_pixels")


def test_the_shipped_profile_carries_every_admitted_frame_in_one_message():
    limit = shm_message_limit(PROFILE)
    assert limit is not None and limit >= largest_message(DEFAULT_MAX_PIXELS), (limit, DEFAULT_MAX_PIXELS)
    # ... and the frames of issue 18's probe, which the node must refuse and count, not lose:
    # 4000x6000 bgr8 (24 megapixels, more than max_image_pixels), with its message header.
    assert 4000 * 6000 * 3 + 1024 <= limit and 4000 * 6000 > DEFAULT_MAX_PIXELS


def test_an_admitted_frame_is_its_pixels_at_four_bytes_and_a_header():
    assert largest_message(16_777_216) >= 16_777_216 * 4 + 200  # bgra8 plus the Image header


def _profile(tmp_path, max_message: int) -> Path:
    path = tmp_path / "profile.xml"
    path.write_text(PROFILE.read_text().replace("<maxMessageSize>" + str(shm_message_limit(PROFILE)),
                                                f"<maxMessageSize>{max_message}"))
    return path


def test_the_start_up_line_says_whether_the_largest_frame_fits(tmp_path):
    carried, line = largest_frame_line(DEFAULT_MAX_PIXELS, {"FASTDDS_DEFAULT_PROFILES_FILE": str(PROFILE)})
    assert carried and "16777216 pixels" in line and "96 MiB in one message" in line, line
    small = _profile(tmp_path, 32 * 2**20)
    assert shm_message_limit(small) == 32 * 2**20
    carried, line = largest_frame_line(DEFAULT_MAX_PIXELS, {"FASTDDS_DEFAULT_PROFILES_FILE": str(small)})
    assert not carried and "32 MiB" in line and "lower max_image_pixels" in line, line
    carried, line = largest_frame_line(DEFAULT_MAX_PIXELS, {})
    assert not carried and "config/fastdds_large_data.xml" in line


def test_an_unreadable_profile_gives_no_limit(tmp_path):
    (tmp_path / "bad.xml").write_text("<dds><profiles>")
    assert shm_message_limit(tmp_path / "bad.xml") is None
    assert shm_message_limit(tmp_path / "missing.xml") is None
