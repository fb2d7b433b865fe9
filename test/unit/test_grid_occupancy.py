"""Fusion over time: log-odds and clamps, decay by half-life, class evidence, the moving window,
the odometry frame, and the settings file."""
import math
from pathlib import Path

import numpy as np
import pytest

from pisr_ros.grid.camera import CameraModel
from pisr_ros.grid.config import PARAMETERS, SHIPPED_CONFIG, GridConfig, config_from_params, load_config
from pisr_ros.grid.inverse_sensor import FREE, IGNORE, OCCUPIED, SEEN_FREE, SEEN_OCCUPIED
from pisr_ros.grid.layout import GridLayout
from pisr_ros.grid.occupancy import Accumulator, FusionParams, logit
from pisr_ros.grid.pipeline import GridBuilder, Pose2D
from pisr_ros.grid.render import Box, render_camera
from pisr_ros.taxonomy import IS_THING, NUM_CLASSES, VOID_TRAIN_ID, by_name

ROOT = Path(__file__).resolve().parents[2]
ROAD, CAR, BUILDING, SKY = (by_name(n).train_id for n in ("road", "car", "building", "sky"))
THINGS_DECAY = tuple(2.0 if IS_THING[c] else 0.0 for c in range(NUM_CLASSES))
# The fusion algebra is checked at OctoMap's numbers (the defaults are checked by nav2's reading).
OCTOMAP = {"p_hit": 0.7, "p_miss": 0.4}


def nav2_reading(occupancy) -> np.ndarray:
    """How nav2 reads OccupancyGrid values: nav2_map_server's trinary thresholds (free_thresh
    0.196, occupied_thresh 0.65; ROS 1 map_server's too), -1 unknown. Reference data of the test,
    not the code's constants."""
    v = np.asarray(occupancy, np.float64)
    return np.where(v < 0, "unknown", np.where(v / 100 > 0.65, "occupied", np.where(v / 100 < 0.196, "free", "unknown")))


def _acc(**kw) -> Accumulator:
    return Accumulator(GridLayout(0.5, 6, 4, 0.0, 0.0), FusionParams(**{**OCTOMAP, **kw}))


def _frame(acc, cells, seen, cls):
    state = np.zeros(acc.layout.size, np.uint8)
    c = np.zeros(acc.layout.size, np.uint8)
    state[cells] = seen
    c[cells] = cls
    acc.update(state, c)


def test_log_odds_saturate_at_the_clamps():
    acc = _acc()
    for _ in range(40):
        _frame(acc, [0], SEEN_OCCUPIED, CAR)
        _frame(acc, [1], SEEN_FREE, ROAD)
    assert acc.logodds[0] == np.float32(logit(0.97)) and acc.logodds[1] == np.float32(logit(0.12))
    data = acc.occupancy().ravel()
    assert data[0] == 97 and data[1] == 12
    # one step, exactly logit(p_hit) / logit(p_miss) from the prior
    acc2 = _acc()
    _frame(acc2, [3], SEEN_OCCUPIED, CAR)
    _frame(acc2, [4], SEEN_FREE, ROAD)
    assert acc2.logodds[3] == pytest.approx(logit(0.7)) and acc2.logodds[4] == pytest.approx(logit(0.4))
    assert acc2.occupancy().ravel()[[3, 4]].tolist() == [70, 40]
    # the clamp lets the map change its mind: from saturated occupied to free in
    # ceil(logit(0.97) / -logit(0.4)) = 9 frames, not after as many frames as it was seen
    for _ in range(8):
        _frame(acc, [0], SEEN_FREE, ROAD)
    assert acc.occupancy().ravel()[0] > 50
    _frame(acc, [0], SEEN_FREE, ROAD)
    assert acc.occupancy().ravel()[0] < 50


def test_never_observed_cells_stay_unknown():
    acc = _acc()
    for k in range(10):
        _frame(acc, [0, 5, 7], SEEN_FREE, ROAD)
        acc.decay(float(k))
    data, sem = acc.occupancy().ravel(), acc.semantic().ravel()
    others = np.setdiff1d(np.arange(acc.layout.size), [0, 5, 7])
    assert (data[others] == -1).all() and (sem[others] == VOID_TRAIN_ID).all()
    assert (data[[0, 5, 7]] >= 0).all() and (sem[[0, 5, 7]] == ROAD).all()


def test_decay_follows_the_half_life():
    acc = _acc(half_life=THINGS_DECAY)
    acc.decay(10.0)
    _frame(acc, [2], SEEN_OCCUPIED, CAR)
    _frame(acc, [3], SEEN_OCCUPIED, BUILDING)
    l0 = float(acc.logodds[2])
    ev0 = acc.evidence().reshape(NUM_CLASSES, -1)[CAR, 2]
    acc.decay(12.0)  # one half-life of a car
    assert acc.logodds[2] == pytest.approx(l0 / 2, rel=1e-6)
    assert acc.evidence().reshape(NUM_CLASSES, -1)[CAR, 2] == pytest.approx(ev0 / 2, rel=1e-6)
    acc.decay(13.0)  # and a half more
    assert acc.logodds[2] == pytest.approx(l0 / 2 ** 1.5, rel=1e-6)
    assert acc.logodds[3] == pytest.approx(l0, rel=1e-6)  # stuff stays
    # after enough half-lives the car cell has nothing left to say: unknown again
    acc.decay(30.0)
    assert acc.occupancy().ravel()[2] == -1 and acc.semantic().ravel()[2] == VOID_TRAIN_ID
    assert acc.occupancy().ravel()[3] == 70


def test_class_evidence_matches_a_plain_reference():
    """The scaled bookkeeping gives the plain moving average with per-class decay."""
    rng = np.random.default_rng(0)
    rate = 0.3
    acc = _acc(half_life=THINGS_DECAY, class_rate=rate)
    n = acc.layout.size
    ref = np.zeros((NUM_CLASSES, n))
    hl = np.array(THINGS_DECAY)
    t = 0.0
    acc.decay(t)
    for _ in range(300):
        dt = rng.uniform(0.0, 0.3)
        t += dt
        acc.decay(t)
        ref[hl > 0] *= (0.5 ** (dt / hl[hl > 0]))[:, None]
        cells = rng.choice(n, size=rng.integers(1, n), replace=False)
        cls = rng.choice([ROAD, CAR, BUILDING, by_name("person").train_id], size=cells.size)
        state = np.zeros(n, np.uint8)
        c = np.zeros(n, np.uint8)
        state[cells] = rng.choice([SEEN_FREE, SEEN_OCCUPIED], size=cells.size)
        c[cells] = cls
        acc.update(state, c)
        ref[:, cells] *= 1 - rate
        ref[cls, cells] += rate
    ev = acc.evidence().reshape(NUM_CLASSES, -1)
    live = acc.observed
    np.testing.assert_allclose(ev[:, live], ref[:, live], rtol=1e-4, atol=1e-7)
    clear = np.sort(ref, axis=0)[-1] > 1.001 * np.sort(ref, axis=0)[-2]
    assert (acc.cls[live & clear] == ref.argmax(axis=0)[live & clear]).all()
    conf = acc.confidence().ravel()
    np.testing.assert_allclose(conf[live], (ref.max(axis=0) / ref.sum(axis=0))[live], rtol=1e-4)


def test_window_moves_by_whole_cells_and_forgets_what_leaves():
    layout = GridLayout(1.0, 5, 4, 0.0, 0.0)
    acc = Accumulator(layout, FusionParams(**OCTOMAP), anchor=(0.0, 0.0))
    # mark the cell at lattice (row 1, col 3): world centre (3.5, 1.5)
    state = np.zeros(layout.size, np.uint8)
    cls = np.zeros(layout.size, np.uint8)
    state[acc.storage_index(np.array([3.5]), np.array([1.5]))] = SEEN_OCCUPIED
    cls[:] = CAR
    acc.update(state, cls)
    before = acc.occupancy()
    assert before[1, 3] == 70 and (before >= 0).sum() == 1
    acc.move_window(1, 2)  # the window now starts at world (2, 1)
    after = acc.occupancy()
    assert acc.window_layout().origin_x == 2.0 and acc.window_layout().origin_y == 1.0
    assert after[0, 1] == 70 and (after >= 0).sum() == 1  # the same world cell, new window place
    acc.move_window(1, 4)  # column 3 leaves the window (a partial move) ...
    assert (acc.occupancy() == -1).all()
    acc.move_window(1, 2)  # ... and comes back unknown
    assert (acc.occupancy() == -1).all()
    acc.update(state, cls)
    acc.move_window(1, 40)  # a jump wider than the window forgets everything
    acc.move_window(1, 2)
    assert (acc.occupancy() == -1).all()
    # storage-order centres agree with the window geometry
    xs, ys = acc.storage_centres()
    idx = acc.storage_index(xs[None, :] + 0 * ys[:, None], ys[:, None] + 0 * xs[None, :])
    assert (idx.ravel() == np.arange(layout.size)).all()


def test_odometry_fusion_keeps_a_static_car_in_place():
    """Two frames from different robot poses: the car's front edge lands in the same odom cells."""
    config = config_from_params({"resolution": 0.2, "size_x": 24.0, "size_y": 16.0, "offset_x": 8.0,
                                 "max_range": 15.0, "camera.x": 1.0, "camera.z": 1.5, "camera.pitch": 0.1,
                                 "use_odom": True})
    camera = CameraModel([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]], [], "", 640, 480, config.pose)
    builder = GridBuilder(config)
    builder.set_camera(camera)
    car = Box(58.1, 62.5, 9.3, 11.1, 1.4, CAR)  # the test scene of test_grid_geometry, moved by (50, 10)
    for pose in (Pose2D(50.0, 10.0, 0.0), Pose2D(51.3, 10.4, 0.12)):
        frame = builder.process(render_camera(camera, [car], x=pose.x, y=pose.y, yaw=pose.yaw), 0.0, pose)
    layout = frame.layout
    assert layout.origin_x == pytest.approx(51.3 + 8.0 * math.cos(0.12) - 12.0, abs=0.1)
    edge = layout.index_of(np.full(8, 58.1), 9.5 + 0.2 * np.arange(8))
    lo, hi = logit(config["clamp_min"]), logit(config["clamp_max"])
    two_hits = round(100 / (1 + math.exp(-min(2 * logit(config["p_hit"]), hi))))
    assert (frame.occupancy.ravel()[edge] == two_hits).all()
    assert (frame.semantic.ravel()[edge] == CAR).all()
    two_misses = round(100 / (1 + math.exp(-max(2 * logit(config["p_miss"]), lo))))
    road = layout.index_of(np.array([56.0, 55.1, 57.0]), np.array([10.1, 9.5, 11.0]))
    assert (frame.occupancy.ravel()[road] == two_misses).all()
    hidden = layout.index_of(np.array([61.0, 64.0]), np.array([10.1, 10.3]))
    assert (frame.occupancy.ravel()[hidden] == -1).all()


def test_ego_grid_is_one_frame_only():
    config = config_from_params({"resolution": 0.2, "size_x": 24.0, "size_y": 16.0, "offset_x": 8.0,
                                 "max_range": 15.0, "camera.x": 1.0, "camera.z": 1.5, "camera.pitch": 0.1})
    camera = CameraModel([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]], [], "", 640, 480, config.pose)
    builder = GridBuilder(config)
    builder.set_camera(camera)
    with_car = builder.process(render_camera(camera, [Box(8.1, 12.5, -0.7, 1.1, 1.4, CAR)]), 0.0)
    assert (nav2_reading(with_car.occupancy) == "occupied").sum() >= 10
    empty = builder.process(render_camera(camera, []), 0.1)
    assert not (nav2_reading(empty.occupancy) == "occupied").any()  # nothing of the previous frame remains
    assert set(np.unique(empty.occupancy).tolist()) == {-1, config.fusion().single_update()[0]}


@pytest.mark.parametrize("use_odom", [False, True])
def test_default_grid_reads_free_road_and_an_occupied_car_to_nav2(use_odom):
    """Issue 18.5: with the default fusion settings one frame of road is free and a car's contact
    occupied by nav2's trinary reading, with and without odometry (OctoMap's 0.7 / 0.4 gave 40
    and 70: the road unknown to nav2)."""
    config = config_from_params({"camera.x": 1.0, "camera.z": 1.5, "camera.pitch": 0.1, "use_odom": use_odom})
    camera = CameraModel([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]], [], "", 640, 480, config.pose)
    builder = GridBuilder(config)
    builder.set_camera(camera)
    pose = Pose2D(0.0, 0.0, 0.0) if use_odom else None
    road_only = nav2_reading(builder.process(render_camera(camera, []), 0.0, pose).occupancy)
    assert (road_only == "free").sum() > 5000 and not (road_only == "occupied").any()
    builder = GridBuilder(config)
    builder.set_camera(camera)
    frame = builder.process(render_camera(camera, [Box(8.15, 12.55, -0.65, 1.15, 1.4, CAR)]), 0.0, pose)
    seen = nav2_reading(frame.occupancy)
    edge = frame.layout.index_of(np.full(12, 8.15), -0.6 + 0.1 * np.arange(12))
    assert (seen.ravel()[edge] == "occupied").all() and (frame.semantic.ravel()[edge] == CAR).all()
    road = frame.layout.index_of(np.array([4.05, 6.05, 7.55]), np.array([0.05, 0.05, -0.35]))
    assert (seen.ravel()[road] == "free").all()


def test_settings_that_nav2_would_read_as_unknown_are_named():
    assert FusionParams().nav2_reading_problem() is None
    problem = FusionParams(**OCTOMAP).nav2_reading_problem()
    assert "40 (free)" in problem and "below 19.6" in problem


# ---------------------------------------------------------------------------- settings
def test_shipped_config_is_the_default():
    shipped = load_config(ROOT / SHIPPED_CONFIG)
    assert dict(shipped.values) == dict(GridConfig().values)
    lut = shipped.effect_lut()
    assert lut[ROAD] == FREE and lut[CAR] == OCCUPIED and lut[SKY] == IGNORE and lut[VOID_TRAIN_ID] == IGNORE
    assert lut[200] == IGNORE  # not a training class: says nothing
    assert shipped.fusion().half_life[CAR] == 2.0 and shipped.fusion().half_life[BUILDING] == 0.0
    assert len(PARAMETERS) == len(shipped.values)


@pytest.mark.parametrize("values,words", [
    ({"resolution": 0.15}, "size_x = 40.0 m is not a whole number"),
    ({"p_hit": 0.45}, r"p_hit must be in \[0\.5, 1\.0\], got 0\.45"),
    ({"p_miss": 0.5}, "p_miss = 0.5 must lie in"),
    ({"clamp_max": 0.6, "p_hit": 0.7, "clamp_min": 0.5}, "clamp"),
    ({"classes.car.effect": "blocked"}, "classes.car.effect must be one of free, occupied, ignore, got 'blocked'"),
    ({"classes.road.effect": "ignore", "classes.sidewalk.effect": "ignore", "classes.terrain.effect": "ignore"},
     "no class has effect 'free'"),
    ({"classes.car.half_life": -1.0}, "classes.car.half_life"),
    ({"camera.pitch": float("nan")}, "camera.pitch must be a finite number"),
    ({"base_frame": ""}, "base_frame must not be empty"),
    ({"size_x": 40}, r"write 40\.0"),
    ({"camera.z": 0.0}, "at or above the camera"),
    ({"resolution": 0.01, "size_x": 40.0, "size_y": 40.0}, "more than 1000000"),
    ({"colour": "red"}, "unknown parameter"),
    ({"use_odom": "yes"}, "true or false"),
])
def test_bad_settings_are_refused_with_the_reason(values, words):
    with pytest.raises(ValueError, match=words):
        config_from_params(values)


def test_bad_settings_file_names_the_file(tmp_path):
    bad = tmp_path / "grid.yaml"
    bad.write_text("/**:\n  ros__parameters:\n    resolution: 0.3\n")
    with pytest.raises(ValueError, match=r"grid\.yaml: .*size_x"):
        load_config(bad)
    bad.write_text("resolution: 0.3\n")
    with pytest.raises(ValueError, match="ros__parameters"):
        load_config(bad)
