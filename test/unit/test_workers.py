import cv2
import numpy as np

from pisr_ros.workers import process_pool


def _resize_sum(n: int) -> float:
    return float(cv2.resize(np.full((n, n), 1, np.float32), (2 * n, 2 * n)).sum())


def test_pool_works_after_the_parent_used_opencv_threads():
    # The parent runs OpenCV's thread pool first; forked children used to hang on its lock.
    cv2.setNumThreads(2)
    _resize_sum(2000)
    with process_pool(2) as pool:
        assert pool.map(_resize_sum, [10, 20]) == [400.0, 1600.0]
