"""Group colours: distinct hues that stay distinct when blended additively on a grey image."""

from __future__ import annotations

import numpy as np

from nwb_facrnn.report import GROUP_COLORS as PALETTE  # the report's figures use the same

# ROIs that are in no fitted group (not modelled, or no fit): light grey.
UNGROUPED = np.array([0.75, 0.75, 0.75, 1.0])


def hex_to_rgba(code: str) -> np.ndarray:
    """``"#RRGGBB"`` to RGBA floats in [0, 1]."""
    code = code.lstrip("#")
    return np.array([int(code[i : i + 2], 16) / 255 for i in (0, 2, 4)] + [1.0])


def group_colors(n_groups: int) -> np.ndarray:
    """(G, 4) RGBA colour of each group; beyond the palette, evenly spaced hues."""
    if n_groups <= len(PALETTE):
        return (
            np.stack([hex_to_rgba(c) for c in PALETTE[:n_groups]]) if n_groups else np.zeros((0, 4))
        )
    import colorsys

    hues = np.linspace(0, 1, n_groups, endpoint=False)
    return np.array([[*colorsys.hsv_to_rgb(h, 0.8, 0.95), 1.0] for h in hues])


def to_hex(rgba: np.ndarray) -> str:
    """RGBA floats to ``"#rrggbb"``."""
    r, g, b = (round(float(c) * 255) for c in rgba[:3])
    return f"#{r:02x}{g:02x}{b:02x}"
