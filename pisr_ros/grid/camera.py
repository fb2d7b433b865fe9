"""A calibrated camera mounted on the robot, and flat-ground projection in both directions.

Frames (REP 103): ``base_link`` is x forward, y left, z up, with the ground plane at z = 0.
The camera's pose is given as x, y, z, roll, pitch, yaw of its *body* frame (x forward, y left,
z up, like any ROS link) in ``base_link``; positive pitch looks down, positive yaw looks left.
Pixels live in the optical frame (z forward, x right, y down), which is the body frame turned by
the fixed rotation every ROS camera driver uses. Pixel coordinates put integer values at pixel
centres (OpenCV's and ROS's CameraInfo convention).

Lens distortion follows ROS CameraInfo: ``plumb_bob`` (k1, k2, p1, p2, k3) and
``rational_polynomial`` (k1, k2, p1, p2, k3, k4, k5, k6), i.e. OpenCV's model, also with OpenCV's
thin-prism (s1..s4, 12 coefficients) and tilted-sensor (tau_x, tau_y, 14 coefficients) terms,
which calibrations made with CALIB_THIN_PRISM_MODEL / CALIB_TILTED_MODEL put in D. Projecting a
ground point needs only the forward model; a pixel is undistorted by Newton's method (after the
tilt, an exact homography, is undone).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Distortion models this module understands, with the numbers of coefficients they take.
DISTORTION_MODELS = {"plumb_bob": (5,), "rational_polynomial": (8, 12, 14)}
#: OpenCV's full coefficient vector: k1, k2, p1, p2, k3, k4, k5, k6, s1, s2, s3, s4, tau_x, tau_y.
N_COEFFICIENTS = 14
# The optical frame's axes written in the body frame: x_opt = -y_body, y_opt = -z_body, z_opt = x_body.
_BODY_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
# Points this close to the camera's image plane (in metres of depth) are not projected: their
# pixel coordinates explode and carry no useful information.
_MIN_DEPTH = 1e-3


@dataclass(frozen=True)
class CameraPose:
    """The camera body frame in ``base_link``: metres and radians (REP 103)."""

    x: float = 0.0
    y: float = 0.0
    z: float = 1.0
    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0

    def validate(self) -> None:
        values = (self.x, self.y, self.z, self.roll, self.pitch, self.yaw)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"camera pose has a non-finite value {values}; give x, y, z in metres "
                             "and roll, pitch, yaw in radians")
        if self.z <= 0.0:
            raise ValueError(
                f"camera z = {self.z} m puts the ground plane at or above the camera; the grid assumes "
                "a flat ground at z = 0 of the base frame, so give the camera's height above the ground "
                "(z > 0, REP 103: z up), or use a base frame on the ground such as base_footprint")

    def rotation(self) -> np.ndarray:
        """base_link <- camera body: R = Rz(yaw) Ry(pitch) Rx(roll) (fixed-axis roll, pitch, yaw)."""
        cr, sr = math.cos(self.roll), math.sin(self.roll)
        cp, sp = math.cos(self.pitch), math.sin(self.pitch)
        cy, sy = math.cos(self.yaw), math.sin(self.yaw)
        rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
        ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
        rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
        return rz @ ry @ rx


def _check_intrinsics(k: np.ndarray, width: int, height: int) -> None:
    if k.shape != (3, 3) or not np.all(np.isfinite(k)):
        raise ValueError(f"K must be a finite 3x3 matrix (CameraInfo.k, row-major); got {k.tolist()}")
    if not np.any(k):
        raise ValueError("K is all zeros: the camera is not calibrated; calibrate it "
                         "(e.g. ROS camera_calibration) and publish camera_info with its intrinsics")
    fx, fy = k[0, 0], k[1, 1]
    if fx <= 0.0 or fy <= 0.0 or abs(np.linalg.det(k)) < 1e-12:
        raise ValueError(f"K is singular or has a non-positive focal length (fx={fx}, fy={fy}); "
                         "check the camera's calibration")
    if k[1, 0] != 0.0 or k[2, 0] != 0.0 or k[2, 1] != 0.0 or k[2, 2] != 1.0:
        raise ValueError(f"K is not a pinhole camera matrix [fx s cx; 0 fy cy; 0 0 1]: {k.tolist()}")
    if width <= 0 or height <= 0:
        raise ValueError(f"camera image size {width}x{height} is empty; camera_info must give width and height")


def _distortion_vector(model: str, d) -> np.ndarray:
    """OpenCV's 14 coefficients (k1, k2, p1, p2, k3, k4, k5, k6, s1..s4, tau_x, tau_y) for a ROS
    distortion model; coefficients the model does not take must be zero, never dropped."""
    d = np.asarray(d, dtype=np.float64).ravel()
    if not np.all(np.isfinite(d)):
        raise ValueError(f"distortion coefficients D are not finite: {d.tolist()}")
    out = np.zeros(N_COEFFICIENTS)
    if d.size == 0 or not np.any(d):
        return out  # an uncalibrated or rectified camera: no distortion, whatever the model says
    if model not in DISTORTION_MODELS:
        raise ValueError(f"distortion model {model!r} is not supported (supported: "
                         f"{', '.join(DISTORTION_MODELS)}); rectify the image first and give D = 0")
    sizes = DISTORTION_MODELS[model]
    counts = " or ".join(filter(None, (", ".join(map(str, sizes[:-1])), str(sizes[-1]))))
    if d.size < sizes[0]:
        raise ValueError(f"{model} takes {counts} coefficients in D, got {d.size}")
    if d.size > N_COEFFICIENTS or (d.size not in sizes and np.any(d[sizes[0]:])):
        raise ValueError(f"{model} takes {counts} coefficients in D (OpenCV's order), "
                         f"got {d.size} with non-zero values beyond the {sizes[0]}th, "
                         "which the model does not define: check the calibration's distortion model")
    out[:d.size] = d
    return out


def _tilt_matrix(tau_x: float, tau_y: float) -> np.ndarray:
    """OpenCV's tilted-sensor projection (computeTiltProjectionMatrix): a homography applied to
    the distorted normalised coordinates."""
    cx, sx, cy, sy = math.cos(tau_x), math.sin(tau_x), math.cos(tau_y), math.sin(tau_y)
    rot_x = np.array([[1.0, 0.0, 0.0], [0.0, cx, sx], [0.0, -sx, cx]])
    rot_y = np.array([[cy, 0.0, -sy], [0.0, 1.0, 0.0], [sy, 0.0, cy]])
    r = rot_y @ rot_x
    proj_z = np.array([[r[2, 2], 0.0, -r[0, 2]], [0.0, r[2, 2], -r[1, 2]], [0.0, 0.0, 1.0]])
    return proj_z @ r


def _apply_homography(h: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = h[2, 0] * x + h[2, 1] * y + h[2, 2]
    w = np.where(w != 0.0, w, 1.0)  # as OpenCV: no division by zero
    return (h[0, 0] * x + h[0, 1] * y + h[0, 2]) / w, (h[1, 0] * x + h[1, 1] * y + h[1, 2]) / w


class CameraModel:
    """Intrinsics, distortion, image size and mounting pose of one camera; immutable once built.

    Raises ValueError, with the reason and what to do, for a zero or singular K, an unsupported
    distortion model, or a pose that puts the ground at or above the camera.
    """

    def __init__(self, k, d, distortion_model: str, width: int, height: int, pose: CameraPose):
        self.k = np.array(k, dtype=np.float64).reshape(3, 3) if np.size(k) == 9 else np.asarray(k, np.float64)
        self.width, self.height = int(width), int(height)
        _check_intrinsics(self.k, self.width, self.height)
        self.distortion_model = distortion_model
        self.d = _distortion_vector(distortion_model, d)
        self._tilt = _tilt_matrix(self.d[12], self.d[13]) if np.any(self.d[12:]) else None
        self._untilt = np.linalg.inv(self._tilt) if self._tilt is not None else None
        pose.validate()
        self.pose = pose
        #: base_link <- optical rotation, and the camera centre in base_link.
        self.rotation = pose.rotation() @ _BODY_FROM_OPTICAL
        self.centre = np.array([pose.x, pose.y, pose.z])
        self._r_max = self._monotonic_radius()

    @property
    def has_distortion(self) -> bool:
        return bool(np.any(self.d))

    def key(self) -> tuple:
        """Everything that decides the projection; equal keys mean equal cameras."""
        return (self.k.tobytes(), self.d.tobytes(), self.width, self.height, self.pose)

    def scaled(self, width: int, height: int) -> CameraModel:
        """The same camera for an image resized to ``width`` x ``height`` (e.g. a model's output).

        Pixel centres map as u' = s (u + 0.5) - 0.5, the sampling of ``panoptic.resize_nearest``.
        """
        sx, sy = width / self.width, height / self.height
        k = self.k.copy()
        k[0, 0] *= sx
        k[0, 1] *= sx
        k[0, 2] = sx * (k[0, 2] + 0.5) - 0.5
        k[1, 1] *= sy
        k[1, 2] = sy * (k[1, 2] + 0.5) - 0.5
        return CameraModel(k, self.d, self.distortion_model if self.has_distortion else "", width, height, self.pose)

    # ------------------------------------------------------------------ distortion
    def _radial(self, r2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The radial factor and its derivative with respect to r^2."""
        k1, k2, _, _, k3, k4, k5, k6 = self.d[:8]
        num = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
        den = 1.0 + r2 * (k4 + r2 * (k5 + r2 * k6))
        dnum = k1 + r2 * (2.0 * k2 + 3.0 * k3 * r2)
        dden = k4 + r2 * (2.0 * k5 + 3.0 * k6 * r2)
        return num / den, (dnum * den - num * dden) / (den * den)

    def _monotonic_radius(self) -> float:
        """Largest undistorted radius up to which r * radial(r) still grows.

        Beyond it the polynomial folds back and points far outside the field of view would land
        inside the image; such points are never projected.
        """
        if not self.has_distortion:
            return math.inf
        r = np.linspace(0.0, 20.0, 200001)
        g = r * self._radial(r * r)[0]
        falling = np.flatnonzero(np.diff(g) <= 0.0)
        return float(r[falling[0]]) if falling.size else math.inf

    def _lens(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Radial, tangential and thin-prism distortion (everything but the tilt)."""
        p1, p2, s1, s2, s3, s4 = self.d[2], self.d[3], self.d[8], self.d[9], self.d[10], self.d[11]
        r2 = x * x + y * y
        radial, _ = self._radial(r2)
        xy = x * y
        return (x * radial + 2.0 * p1 * xy + p2 * (r2 + 2.0 * x * x) + r2 * (s1 + s2 * r2),
                y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * xy + r2 * (s3 + s4 * r2))

    def distort(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised undistorted -> normalised distorted coordinates (OpenCV's projectPoints)."""
        if not self.has_distortion:
            return x, y
        xd, yd = self._lens(x, y)
        return _apply_homography(self._tilt, xd, yd) if self._tilt is not None else (xd, yd)

    def undistort(self, xd: np.ndarray, yd: np.ndarray, iterations: int = 30) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of :meth:`distort` by Newton's method; NaN where it does not converge."""
        if not self.has_distortion:
            return xd, yd
        if self._untilt is not None:
            xd, yd = _apply_homography(self._untilt, xd, yd)
        p1, p2, s1, s2, s3, s4 = self.d[2], self.d[3], self.d[8], self.d[9], self.d[10], self.d[11]
        x, y = xd.copy(), yd.copy()
        for _ in range(iterations):
            r2 = x * x + y * y
            radial, dradial = self._radial(r2)
            fx, fy = self._lens(x, y)
            ex, ey = fx - xd, fy - yd
            prism_x, prism_y = 2.0 * (s1 + 2.0 * s2 * r2), 2.0 * (s3 + 2.0 * s4 * r2)  # d/dx of r2 (s + s' r2), / x
            j11 = radial + 2.0 * x * x * dradial + 2.0 * p1 * y + 6.0 * p2 * x + prism_x * x
            j12 = 2.0 * x * y * dradial + 2.0 * p1 * x + 2.0 * p2 * y + prism_x * y
            j21 = 2.0 * x * y * dradial + 2.0 * p1 * x + 2.0 * p2 * y + prism_y * x
            j22 = radial + 2.0 * y * y * dradial + 6.0 * p1 * y + 2.0 * p2 * x + prism_y * y
            det = j11 * j22 - j12 * j21
            x = x - (j22 * ex - j12 * ey) / det
            y = y - (j11 * ey - j21 * ex) / det
            if np.nanmax(np.abs(ex) + np.abs(ey), initial=0.0) < 1e-15:
                break
        fx, fy = self._lens(x, y)
        bad = ~(np.abs(fx - xd) + np.abs(fy - yd) < 1e-10) | (x * x + y * y > self._r_max ** 2)
        return np.where(bad, np.nan, x), np.where(bad, np.nan, y)

    # ------------------------------------------------------------------ projection
    def to_optical(self, points: np.ndarray) -> np.ndarray:
        """base_link points (N, 3) in the optical frame (N, 3)."""
        return (np.asarray(points, np.float64) - self.centre) @ self.rotation

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (N, 2) of base_link points (N, 3), and which are valid (N,).

        Invalid: behind or nearly on the camera's image plane, or beyond the radius where the
        distortion model stops being one-to-one. The pixel may still lie outside the image.
        """
        p = self.to_optical(points)
        z = p[:, 2]
        valid = z > _MIN_DEPTH
        zs = np.where(valid, z, 1.0)
        x, y = p[:, 0] / zs, p[:, 1] / zs
        valid &= x * x + y * y < self._r_max ** 2
        xd, yd = self.distort(x, y)
        u = self.k[0, 0] * xd + self.k[0, 1] * yd + self.k[0, 2]
        v = self.k[1, 1] * yd + self.k[1, 2]
        return np.stack([u, v], axis=-1), valid

    def pixel_rays(self, uv: np.ndarray) -> np.ndarray:
        """Ray directions (N, 3) in base_link (not normalised) through pixels (N, 2); NaN if unknown."""
        uv = np.asarray(uv, np.float64).reshape(-1, 2)
        yd = (uv[:, 1] - self.k[1, 2]) / self.k[1, 1]
        xd = (uv[:, 0] - self.k[0, 2] - self.k[0, 1] * yd) / self.k[0, 0]
        x, y = self.undistort(xd, yd)
        return np.stack([x, y, np.ones_like(x)], axis=-1) @ self.rotation.T

    def pixel_to_ground(self, uv: np.ndarray) -> np.ndarray:
        """Where the rays through pixels (N, 2) meet the ground z = 0: (N, 3) base_link points.

        NaN for pixels at or above the horizon, whose rays never reach the ground.
        """
        d = self.pixel_rays(uv)
        down = d[:, 2] < -1e-12
        t = np.where(down, -self.centre[2] / np.where(down, d[:, 2], -1.0), np.nan)
        return self.centre + t[:, None] * d

    def horizon_row(self, u: float | None = None) -> float:
        """Image row of the horizon at column ``u`` (the centre column by default), for a pinhole view.

        Rows above it never see the ground. Distortion is ignored here: used for plots and checks.
        """
        u = self.k[0, 2] if u is None else u
        # The horizon is where the ray's z component in base_link vanishes: a line in normalised
        # coordinates, a . (x, y, 1) = 0 with a = the third row of the rotation.
        a = self.rotation[2]
        x = (u - self.k[0, 2]) / self.k[0, 0]
        if abs(a[1]) < 1e-12:
            return math.nan
        y = -(a[0] * x + a[2]) / a[1]
        return float(self.k[1, 1] * y + self.k[1, 2])
