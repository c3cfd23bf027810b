"""Field of view of the synthetic imaging session (:mod:`.imaging`): the optics.

Non-overlapping elliptical ROIs and their image masks, the smooth background and the camera
movie rendered from them: ``camera offset + bleached background + sum_i mask_i F_i + camera
noise``, rounded and clipped to uint16 counts.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter

from ..errors import OptionError

# ROI shapes (pixels): semi-major axis range, minor/major ratio range, placement attempts.
_SEMI_MAJOR = (4.5, 7.0)
_AXIS_RATIO = (0.6, 0.95)
_MAX_PLACEMENT_TRIES = 500
# Background range (camera counts per pixel) and camera offset.
_BACKGROUND = (150.0, 400.0)
CAMERA_OFFSET = 100.0
"""Constant camera offset (counts) of every pixel of the movie."""


def ellipse_mask(
    shape: tuple[int, int], center: np.ndarray, axes: np.ndarray, angle: float
) -> np.ndarray:
    """Boolean filled ellipse (pixel centres inside), shape ``shape``."""
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    dr, dc = rows - center[0], cols - center[1]
    u = dr * math.cos(angle) + dc * math.sin(angle)
    v = -dr * math.sin(angle) + dc * math.cos(angle)
    return (u / axes[0]) ** 2 + (v / axes[1]) ** 2 <= 1.0


def place_rois(
    rng: np.random.Generator, n_rois: int, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Non-overlapping random ellipses inside the frame: masks, centres, axes and angles."""
    occupied = np.zeros(shape, dtype=bool)
    masks = np.zeros((n_rois, *shape), dtype=np.float32)
    centers = np.zeros((n_rois, 2))
    axes = np.zeros((n_rois, 2))
    angles = np.zeros(n_rois)
    for i in range(n_rois):
        for _ in range(_MAX_PLACEMENT_TRIES):
            major = rng.uniform(*_SEMI_MAJOR)
            axis_pair = np.array([major, major * rng.uniform(*_AXIS_RATIO)])
            angle = rng.uniform(0.0, math.pi)
            margin = major + 1.0
            center = rng.uniform([margin, margin], [shape[0] - 1 - margin, shape[1] - 1 - margin])
            mask = ellipse_mask(shape, center, axis_pair, angle)
            if not np.any(mask & occupied):
                break
        else:
            raise OptionError(
                f"could not place {n_rois} non-overlapping ROIs in a {shape[0]} x {shape[1]} "
                f"frame (placed {i}); use fewer ROIs or a larger frame_shape"
            )
        occupied |= mask
        masks[i] = mask
        centers[i], axes[i], angles[i] = center, axis_pair, angle
    return masks, centers, axes, angles


def background_image(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Smooth background image (counts), values in ``_BACKGROUND``."""
    smooth = gaussian_filter(rng.standard_normal(shape), sigma=min(shape) / 8, mode="reflect")
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return _BACKGROUND[0] + (_BACKGROUND[1] - _BACKGROUND[0]) * smooth


def render_movie(
    rng: np.random.Generator,
    masks: np.ndarray,
    fluorescence: np.ndarray,
    background: np.ndarray,
    background_bleach: np.ndarray,
    camera_noise: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The uint16 movie (T, H, W) and its mean and max images (H, W) float32."""
    n_frames = fluorescence.shape[0]
    shape = masks.shape[1:]
    flat_masks = masks.reshape(len(masks), -1)
    flat_background = background.reshape(-1).astype(np.float32)
    movie = np.empty((n_frames, *shape), dtype=np.uint16)
    total = np.zeros(flat_masks.shape[1])
    peak = np.zeros(flat_masks.shape[1], dtype=np.float32)
    for start in range(0, n_frames, 100):
        stop = min(start + 100, n_frames)
        frames = fluorescence[start:stop] @ flat_masks
        frames += CAMERA_OFFSET + background_bleach[start:stop, None].astype(np.float32) * (
            flat_background
        )
        frames += camera_noise * rng.standard_normal(frames.shape, dtype=np.float32)
        counts = np.clip(np.rint(frames), 0, np.iinfo(np.uint16).max).astype(np.uint16)
        movie[start:stop] = counts.reshape(stop - start, *shape)
        total += counts.sum(axis=0, dtype=np.float64)
        peak = np.maximum(peak, counts.max(axis=0))
    mean_image = (total / n_frames).astype(np.float32).reshape(shape)
    return movie, mean_image, peak.reshape(shape)
