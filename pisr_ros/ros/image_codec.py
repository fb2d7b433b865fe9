"""numpy -> sensor_msgs Image for the node's outputs. Decoding the inputs is
``pisr_ros.image_decode`` (ROS-free, shared with the bag reader)."""
from __future__ import annotations

import array as pyarray

import numpy as np
from sensor_msgs.msg import Image


def array_to_image(array: np.ndarray, encoding: str, header) -> Image:
    """An Image of ``array`` (HxW or HxWxC, contiguous) with ``header`` unchanged."""
    array = np.ascontiguousarray(array)
    h, w = array.shape[:2]
    msg = Image(header=header, height=h, width=w, encoding=encoding, is_bigendian=0,
                step=array.strides[0])
    # An array.array is stored as it is (bytes would be checked or copied once more by the
    # message's setter); frombytes of a memoryview is the single copy.
    data = pyarray.array("B")
    data.frombytes(memoryview(array.reshape(-1)).cast("B"))
    msg.data = data
    return msg
