"""Conversions between the library's results and the package's ROS 2 messages."""
from __future__ import annotations

from collections.abc import Iterable

from sensor_msgs.msg import RegionOfInterest
from std_msgs.msg import ColorRGBA, Header

from pisr_ros.msg import PanopticInstance, PanopticInstanceArray, PanopticLabelInfo
from pisr_ros.panoptic import LABEL_DIVISOR, Segment
from pisr_ros.taxonomy import CLASSES, CLASS_NAMES


def instance_msg(seg: Segment) -> PanopticInstance:
    x, y, w, h = seg.bbox
    return PanopticInstance(
        id=seg.id,
        class_id=seg.class_id,
        class_name=CLASS_NAMES[seg.class_id],
        is_thing=seg.is_thing,
        score=seg.score,
        area=seg.area,
        bbox=RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h, do_rectify=False),
        centroid_x=seg.centroid[0],
        centroid_y=seg.centroid[1],
    )


def instance_array_msg(segments: Iterable[Segment], header: Header, height: int, width: int) -> PanopticInstanceArray:
    """One entry per segment, in the order given (``segments_of`` sorts them by id)."""
    return PanopticInstanceArray(
        header=header,
        height=height,
        width=width,
        label_divisor=LABEL_DIVISOR,
        instances=[instance_msg(s) for s in segments],
    )


def label_info_msg(header: Header) -> PanopticLabelInfo:
    return PanopticLabelInfo(
        header=header,
        label_divisor=LABEL_DIVISOR,
        class_ids=[c.train_id for c in CLASSES],
        class_names=[c.name for c in CLASSES],
        is_thing=[c.is_thing for c in CLASSES],
        colors=[ColorRGBA(r=c.color[0] / 255.0, g=c.color[1] / 255.0, b=c.color[2] / 255.0, a=1.0) for c in CLASSES],
    )
