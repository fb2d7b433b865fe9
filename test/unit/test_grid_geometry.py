"""Flat-ground geometry of the occupancy grid, checked against independent constructions.

The camera's projection is compared with OpenCV's projectPoints (pose built with Rodrigues, not
with our rotation code) and with plain trigonometry for a pitched camera. The inverse sensor
model is checked cell by cell against a scene of known layout rendered by ray casting from a
camera whose rays are built here by trigonometry, independent of CameraModel.
"""
import math

import cv2
import numpy as np
import pytest

from pisr_ros.grid.camera import CameraModel, CameraPose
from pisr_ros.grid.config import config_from_params
from pisr_ros.grid.inverse_sensor import FREE, IGNORE, OCCUPIED, contact_rows
from pisr_ros.grid.layout import GridLayout, cells_in
from pisr_ros.grid.pipeline import GridBuilder
from pisr_ros.grid.render import Box, render_labels
from pisr_ros.taxonomy import VOID_TRAIN_ID, by_name

ROAD, CAR, SKY, POLE = (by_name(n).train_id for n in ("road", "car", "sky", "pole"))
K = np.array([[500.0, 0.0, 319.5], [0.0, 500.0, 239.5], [0.0, 0.0, 1.0]])
W, H = 640, 480
PLUMB_BOB = [-0.28, 0.09, 0.0012, -0.0008, -0.015]
RATIONAL = [0.35, -0.12, 0.0009, 0.0011, 0.02, 0.62, -0.05, 0.03]
# OpenCV's thin-prism (s1..s4) and tilted-sensor (tau_x, tau_y) terms on top: 12 and 14 coefficients.
THIN_PRISM = RATIONAL + [0.004, -0.002, 0.003, 0.001]
TILTED = THIN_PRISM + [0.02, -0.015]
MODELS = [("", []), ("plumb_bob", PLUMB_BOB), ("rational_polynomial", RATIONAL),
          ("rational_polynomial", THIN_PRISM), ("rational_polynomial", TILTED)]


def _opencv_pose(pose: CameraPose):
    """rvec, tvec mapping base_link points into the optical frame, built with Rodrigues."""
    rz = cv2.Rodrigues(np.array([0.0, 0.0, pose.yaw]))[0]
    ry = cv2.Rodrigues(np.array([0.0, pose.pitch, 0.0]))[0]
    rx = cv2.Rodrigues(np.array([pose.roll, 0.0, 0.0]))[0]
    # Optical axes in the body frame (REP 103): x_opt = -y, y_opt = -z, z_opt = x.
    body_from_optical = np.column_stack([[0, -1, 0], [0, 0, -1], [1, 0, 0]]).astype(float)
    base_from_optical = rz @ ry @ rx @ body_from_optical
    rvec = cv2.Rodrigues(base_from_optical.T)[0]
    tvec = -base_from_optical.T @ np.array([pose.x, pose.y, pose.z])
    return rvec, tvec


def _ground_points_in_view(camera: CameraModel, n=2000, seed=0):
    rng = np.random.default_rng(seed)
    pts = np.column_stack([rng.uniform(-5, 40, n), rng.uniform(-20, 20, n), np.zeros(n)])
    uv, valid = camera.project(pts)
    inside = valid & (uv[:, 0] >= 0) & (uv[:, 0] <= W - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= H - 1)
    assert inside.sum() > 200  # the check below must cover many points
    return pts[inside], uv[inside]


@pytest.mark.parametrize("model,d", MODELS)
def test_projection_matches_opencv(model, d):
    pose = CameraPose(1.2, -0.3, 1.4, 0.02, 0.08, 0.15)
    camera = CameraModel(K, d, model, W, H, pose)
    pts, uv = _ground_points_in_view(camera)
    rvec, tvec = _opencv_pose(pose)
    ref = cv2.projectPoints(pts, rvec, tvec, K, np.array(d, float) if d else None)[0].reshape(-1, 2)
    assert np.max(np.abs(uv - ref)) < 1e-6


@pytest.mark.parametrize("model,d", MODELS[1:])
def test_undistortion_matches_opencv(model, d):
    """Pixels -> normalised coordinates against cv2.undistortPoints, iterated to convergence
    (its default of 5 iterations is off by 1e-2 for the tilted model here)."""
    camera = CameraModel(K, d, model, W, H, CameraPose(0.0, 0.0, 1.5, 0.0, 0.1, 0.0))
    vs, us = np.mgrid[0:H:9, 0:W:9]
    pix = np.column_stack([us.ravel(), vs.ravel()]).astype(float)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-15)
    ref = cv2.undistortPoints(pix.reshape(-1, 1, 2), K, np.array(d, float), criteria=criteria).reshape(-1, 2)
    x, y = camera.undistort((pix[:, 0] - K[0, 2]) / K[0, 0], (pix[:, 1] - K[1, 2]) / K[1, 1])
    assert np.isfinite(x).all() and np.max(np.abs(np.column_stack([x, y]) - ref)) < 1e-9


def test_pose_conventions_by_trigonometry():
    """REP 103: positive pitch looks down, positive yaw looks left, y is left."""
    h, pitch = 1.5, 0.1
    camera = CameraModel(K, [], "", W, H, CameraPose(0.0, 0.0, h, 0.0, pitch, 0.0))
    d = np.array([3.0, 7.0, 20.0])
    uv, valid = camera.project(np.column_stack([d, np.zeros(3), np.zeros(3)]))
    assert valid.all()
    np.testing.assert_allclose(uv[:, 0], K[0, 2], atol=1e-9)
    np.testing.assert_allclose(uv[:, 1], K[1, 2] + K[1, 1] * np.tan(np.arctan2(h, d) - pitch), atol=1e-9)
    assert camera.horizon_row() == pytest.approx(K[1, 2] - K[1, 1] * math.tan(pitch), abs=1e-9)
    left = camera.project(np.array([[10.0, 2.0, 0.0]]))[0][0]
    assert left[0] < K[0, 2]  # +y is left, and left is smaller u
    turned = CameraModel(K, [], "", W, H, CameraPose(0.0, 0.0, h, 0.0, 0.0, math.atan2(2.0, 10.0)))
    assert turned.project(np.array([[10.0, 2.0, 0.0]]))[0][0, 0] == pytest.approx(K[0, 2], abs=1e-9)


@pytest.mark.parametrize("model,d", MODELS)
def test_ground_pixel_ground_round_trip(model, d):
    camera = CameraModel(K, d, model, W, H, CameraPose(0.7, 0.2, 1.6, -0.03, 0.12, -0.2))
    pts, uv = _ground_points_in_view(camera, seed=1)
    back = camera.pixel_to_ground(uv)
    assert np.max(np.abs(back - pts)) < 1e-6
    # and pixel -> ground -> pixel, over the whole part of the image below the horizon
    vs, us = np.mgrid[0:H:7, 0:W:7]
    pix = np.column_stack([us.ravel(), vs.ravel()]).astype(float)
    ground = camera.pixel_to_ground(pix)
    hit = np.isfinite(ground[:, 0])
    assert hit.sum() > 0.4 * hit.size
    again, valid = camera.project(ground[hit])
    assert valid.all() and np.max(np.abs(again - pix[hit])) < 1e-6


def test_rays_at_or_above_the_horizon_never_reach_the_ground():
    camera = CameraModel(K, PLUMB_BOB, "plumb_bob", W, H, CameraPose(0.0, 0.0, 1.5, 0.0, 0.05, 0.0))
    horizon = camera.horizon_row()
    above = np.array([[319.5, horizon - 1.0], [100.0, horizon - 40.0], [319.5, 0.0]])
    assert np.isnan(camera.pixel_to_ground(above)).all()
    behind = camera.project(np.array([[-5.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))[1]
    assert not behind.any()


def test_scaled_camera_maps_pixel_centres():
    camera = CameraModel(K, PLUMB_BOB, "plumb_bob", W, H, CameraPose(0.0, 0.0, 1.5, 0.0, 0.1, 0.0))
    half = camera.scaled(W // 2, H // 2)
    pts, uv = _ground_points_in_view(camera, seed=2)
    np.testing.assert_allclose(half.project(pts)[0], (uv + 0.5) / 2.0 - 0.5, atol=1e-9)


@pytest.mark.parametrize("k,d,model,pose,words", [
    (np.zeros((3, 3)), [], "", CameraPose(z=1.0), "all zeros"),
    ([[0.0, 0, 320], [0, 500, 240], [0, 0, 1]], [], "", CameraPose(z=1.0), "singular"),
    ([[500.0, 0, 320], [0, -500, 240], [0, 0, 1]], [], "", CameraPose(z=1.0), "non-positive focal"),
    ([[500.0, 0, 320], [0, 500, 240], [0, 0, 0]], [], "", CameraPose(z=1.0), "singular"),
    ([[500.0, 0, 320], [0, 500, np.nan], [0, 0, 1]], [], "", CameraPose(z=1.0), "finite"),
    (K, [0.1, 0.01, 0.0, 0.0], "equidistant", CameraPose(z=1.0), "not supported"),
    (K, [0.1, 0.01], "plumb_bob", CameraPose(z=1.0), "takes 5 coefficients"),
    (K, RATIONAL, "plumb_bob", CameraPose(z=1.0), "non-zero values beyond the 5th"),  # never dropped silently
    (K, RATIONAL + [0.01, 0.02], "rational_polynomial", CameraPose(z=1.0), "takes 8, 12 or 14"),
    (K, TILTED + [0.1], "rational_polynomial", CameraPose(z=1.0), "got 15"),
    (K, [], "", CameraPose(z=0.0), "at or above the camera"),
    (K, [], "", CameraPose(z=-1.2), "at or above the camera"),
    (K, [], "", CameraPose(z=1.0, pitch=math.nan), "non-finite"),
])
def test_bad_camera_refused_with_reason(k, d, model, pose, words):
    with pytest.raises(ValueError, match=words):
        CameraModel(k, d, model, W, H, pose)


def test_layout_geometry():
    layout = GridLayout.centred(0.2, 24.0, 16.0, 8.0, 0.0)
    assert (layout.width, layout.height, layout.origin_x, layout.origin_y) == (120, 80, -4.0, -8.0)
    idx = layout.index_of(np.array([-4.0, -3.81, 19.99, 20.0, np.nan]), np.array([-8.0, -7.9, 7.99, 0.0, 0.0]))
    assert idx.tolist() == [0, 0, 79 * 120 + 119, -1, -1]
    centres = layout.centres()
    assert centres[121].tolist() == pytest.approx([-3.7, -7.7, 0.0])  # row 1, column 1
    with pytest.raises(ValueError, match="whole number"):
        cells_in(40.05, 0.1, "size_x")


def test_contact_rows_per_column():
    effects = np.full((6, 4), FREE, np.uint8)
    effects[0, :] = IGNORE  # sky on top
    effects[2, 1] = OCCUPIED
    effects[4, 2] = OCCUPIED
    effects[1, 2] = OCCUPIED
    effects[:, 3] = FREE
    assert contact_rows(effects).tolist() == [0, 2, 4, -1]
    assert contact_rows(effects[2:], first_row=2).tolist() == [-1, 2, 4, -1]


# ---------------------------------------------------------------------------- exact geometry
# A camera 1.5 m up, 1 m ahead of base_link, pitched 0.1 rad down; a road everywhere and one car,
# a box whose edges lie on cell centres of the 0.2 m grid so that each edge sits in one cell.
CAM_X, CAM_H, PITCH = 1.0, 1.5, 0.1
CAR_BOX = Box(8.1, 12.5, -0.7, 1.1, 1.4, CAR)  # the camera (y = 0) sees only its front face
GRID = {"resolution": 0.2, "size_x": 24.0, "size_y": 16.0, "offset_x": 8.0, "offset_y": 0.0, "max_range": 15.0,
        "camera.x": CAM_X, "camera.z": CAM_H, "camera.pitch": PITCH}
_FWD = np.array([math.cos(PITCH), 0.0, -math.sin(PITCH)])  # optical z in base_link
_RIGHT = np.array([0.0, -1.0, 0.0])  # optical x
_DOWN = np.array([-math.sin(PITCH), 0.0, -math.cos(PITCH)])  # optical y
_CENTRE = np.array([CAM_X, 0.0, CAM_H])


def _rays(u, v):
    return (((u - K[0, 2]) / K[0, 0])[..., None] * _RIGHT + ((v - K[1, 2]) / K[1, 1])[..., None] * _DOWN + _FWD)


def _render(boxes=(CAR_BOX,)):
    vs, us = np.mgrid[0:H, 0:W].astype(float)
    return render_labels(_CENTRE, _rays(us, vs), boxes)


def _project(p):
    q = p - _CENTRE
    z = q @ _FWD
    return K[0, 0] * (q @ _RIGHT) / z + K[0, 2], K[1, 1] * (q @ _DOWN) / z + K[1, 2], z


def _visible(p, box=CAR_BOX):
    """Whether the segment from the camera to ground points p (N, 3) misses the box."""
    d = p - _CENTRE
    lo, hi = np.array([box.x0, box.y0, 0.0]), np.array([box.x1, box.y1, box.height])
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (lo - _CENTRE) / d, (hi - _CENTRE) / d
    near, far = np.minimum(t0, t1).max(axis=1), np.maximum(t0, t1).min(axis=1)
    return ~((near <= far) & (far > 0) & (near < 1.0 - 1e-9))


def _ground_of(u, v):
    d = _rays(u, v)
    return _CENTRE + (-CAM_H / d[..., 2])[..., None] * d


def _near_shadow(c, box, tol):
    """Cells within ``tol`` of the ground "shadows" of the box's two front vertical edges.

    Seen from a pitched camera a vertical edge is slanted in the image, so in the columns it
    crosses the lowest object pixel is a point of the edge above the ground, with visible ground
    just below it. Flat-ground IPM (the issue's rule: the first non-ground pixel from the bottom is
    the contact point) then puts an occupied mark where that pixel's ray meets the ground: on the
    edge's central projection from the camera, the half-line from the edge's foot directly away
    from the point below the camera. That line is also the border of the hidden wedge. So cells on
    it may read free, hidden or occupied; this is the one-cell band the checks allow.
    """
    foot = np.array([CAM_X, 0.0])
    near = np.zeros(len(c), bool)
    for corner in (np.array([box.x0, box.y0]), np.array([box.x0, box.y1])):
        away = (corner - foot) / np.linalg.norm(corner - foot)
        rel = c[:, :2] - corner
        t = rel @ away
        dist = np.where(t < 0, np.hypot(rel[:, 0], rel[:, 1]), np.abs(rel[:, 0] * away[1] - rel[:, 1] * away[0]))
        near |= dist <= tol
    return near


def _expected():
    """Per cell: 'free', 'occupied', 'unknown', or 'band' where the outcome is legitimately open."""
    layout = GridLayout.centred(0.2, 24.0, 16.0, 8.0, 0.0)
    c = layout.centres()
    u, v, z = _project(c)
    col, row = np.floor(u + 0.5), np.floor(v + 0.5)
    in_view = (z > 0) & (col >= 0) & (col < W) & (row >= 0) & (row < H)
    in_view &= np.hypot(c[:, 0] - CAM_X, c[:, 1]) <= 15.0
    visible = _visible(c)
    # The label a cell reads is its nearest pixel's, whose ray is up to half a pixel from the
    # centre's: where the car's silhouette passes within that half pixel the cell may read either.
    band = np.zeros(len(c), bool)
    for du in (-0.5, 0.5):
        for dv in (-0.5, 0.5):
            band |= _visible(_ground_of(u + du, v + dv)) != visible
    band |= _near_shadow(c, CAR_BOX, layout.resolution)
    edge = (np.abs(c[:, 0] - 8.1) < 0.1) & (c[:, 1] > CAR_BOX.y0 - 0.1) & (c[:, 1] < CAR_BOX.y1 + 0.1)
    out = np.where(~in_view, "unknown", np.where(edge, "occupied", np.where(visible, "free", "unknown")))
    out = np.where(in_view & band & ~edge, "band", out)
    return layout, out.reshape(layout.shape)


def _grid(labels):
    builder = GridBuilder(config_from_params(GRID))
    builder.set_camera(CameraModel(K, [], "", W, H, CameraPose(CAM_X, 0.0, CAM_H, 0.0, PITCH, 0.0)))
    return builder.process(labels, 0.0)


def test_grid_matches_known_layout_cell_by_cell():
    labels = _render()
    frame = _grid(labels)
    layout, expected = _expected()
    assert frame.layout == layout
    occ, sem = frame.occupancy, frame.semantic
    # nav2's trinary reading (free below 0.196, occupied above 0.65, -1 unknown), and nothing else
    single = (-1, *config_from_params(GRID).fusion().single_update())
    state = np.select([occ == single[0], occ == single[1], occ == single[2]], ["unknown", "free", "occupied"], "other")
    assert single[1] / 100 < 0.196 and single[2] / 100 > 0.65

    strict = expected != "band"
    wrong = strict & (state != expected)
    assert not wrong.any(), f"{wrong.sum()} cells differ, e.g. at (row, col) {np.argwhere(wrong)[:5].tolist()}"
    assert (state != "other").all()
    # The band is a thin rim along the hidden wedge's borders, not an escape hatch; the contact
    # marks it may hold are the car's (checked below with the semantics).
    assert (~strict).sum() < 0.02 * strict.sum()
    # Semantics follow: road where free, car on the contact edge, nothing where unknown.
    assert (sem[state == "free"] == ROAD).all()
    assert (sem[state == "occupied"] == CAR).all()
    assert (sem[state == "unknown"] == VOID_TRAIN_ID).all()
    # What the scene must show, so that the test cannot pass on an empty grid.
    counts = {s: int((expected == s).sum()) for s in ("free", "occupied", "unknown")}
    assert counts["occupied"] == 10 and counts["free"] > 2000 and counts["unknown"] > 2000
    i_car, j_behind = layout.index_of(np.array([8.1]), np.array([0.1]))[0] // 120, int((11.1 + 4.0) / 0.2)
    assert state[i_car, j_behind] == "unknown"  # behind the car's front face: hidden


def test_rows_above_the_horizon_give_no_update():
    labels = _render()
    horizon = int(math.floor(K[1, 2] - K[1, 1] * math.tan(PITCH)))  # the last row above it
    assert (labels[: horizon + 1] == SKY).all()
    painted = labels.copy()
    painted[: horizon + 1] = ROAD  # nonsense where cells behind the camera would land, mirrored
    a, b = _grid(labels), _grid(painted)
    np.testing.assert_array_equal(a.occupancy, b.occupancy)
    behind = a.layout.centres()[:, 0].reshape(a.layout.shape) < CAM_X
    assert (a.occupancy[behind] == -1).all()


def test_object_cut_by_the_bottom_row_has_no_contact():
    near_car = Box(2.5, 6.0, -1.0, 1.0, 1.4, CAR)  # begins below the bottom row's ground (3.46 m)
    labels = _render((near_car,))
    full = (labels[-1] == CAR)
    assert full.sum() > 100  # the car fills the bottom row over many columns
    frame = _grid(labels)
    c = frame.layout.centres()
    occupied = (frame.occupancy / 100 > 0.65).ravel()
    # Without the rule, every column the car fills would mark the bottom row's ground point
    # (about 3.5 m ahead, inside the car) occupied. With it, only the slanted silhouette of the
    # two front vertical edges can leave marks, on their ground shadows (see _near_shadow).
    assert not (occupied & ~_near_shadow(c, near_car, 0.2)).any()
    # The columns the car fills say nothing beyond it either: behind it the grid stays unknown.
    behind = frame.layout.index_of(np.array([4.0, 8.0, 10.0]), np.array([0.0, 0.0, 0.3]))
    assert (frame.occupancy.ravel()[behind] == -1).all()


def test_contact_edge_is_marked_when_cells_span_many_pixels():
    """Near the camera a 0.5 m cell covers ~20 pixel rows; its centre can fall on the free side of
    a contact edge that crosses it. The forward-mapped contact points still mark that cell."""
    box = Box(5.3, 7.0, -0.6, 0.6, 1.2, POLE)
    labels = _render((box,))
    config = config_from_params({**GRID, "resolution": 0.5, "size_x": 24.0, "size_y": 16.0})
    builder = GridBuilder(config)
    builder.set_camera(CameraModel(K, [], "", W, H, CameraPose(CAM_X, 0.0, CAM_H, 0.0, PITCH, 0.0)))
    frame = builder.process(labels, 0.0)
    idx = frame.layout.index_of(np.array([5.3, 5.3]), np.array([-0.4, 0.4]))  # cells [5.0, 5.5) x ...
    assert (frame.occupancy.ravel()[idx] / 100 > 0.65).all()
    assert (frame.semantic.ravel()[idx] == POLE).all()
