"""What `ncseg predict` writes from a Segmentation, without running a network: here the overlay a microscopist
reads first."""

import numpy as np
from PIL import Image, ImageColor

from ncseg.figures import BORDER, INSIDE, OVERLAY_PX, TITLE_PX, particle_overlay
from ncseg.particles import measure


def _colour_at(picture: np.ndarray, colour: str) -> np.ndarray:
    return np.all(picture == ImageColor.getrgb(colour), axis=-1)


def test_the_overlay_outlines_each_particle_on_its_pixel_edges_in_its_kind_of_colour_with_a_scale_bar(tmp_path):
    """100 px drawn 9x: an inside particle's outline lies on its pixel edges in yellow; one cut by the border is
    cyan and dashed (left out of sizes); a white bar in the lower right gives the scale."""
    labels = np.zeros((100, 100), np.int32)
    labels[20:40, 30:50], labels[60:80, 0:15] = 1, 2  # 2 touches the left edge
    image = np.where(labels > 0, 0.8, 0.2)
    particles = measure(labels, 0.5, None)
    particle_overlay(tmp_path / "o.png", image, labels, particles, 0.5, "o.tif: 2 particles\nmodel")
    picture = np.asarray(Image.open(tmp_path / "o.png").convert("RGB"))
    scale = OVERLAY_PX[0] / 100
    assert picture.shape[1] == OVERLAY_PX[0], "a small image is enlarged so that its ids can be read"
    drawn = picture[TITLE_PX : TITLE_PX + round(100 * scale)]
    top_edge = round(20 * scale)  # the top pixel edge of particle 1, rows 20..39, columns 30..49
    along = drawn[top_edge - 1 : top_edge + 1, round(32 * scale) : round(48 * scale)]
    assert _colour_at(along, INSIDE).any(axis=0).all(), "a solid outline on the particle's top edge"
    inside = drawn[round(21 * scale) : round(26 * scale), round(31 * scale) : round(49 * scale)]  # above its id
    assert not _colour_at(inside, INSIDE).any(), "an outline, not a filled shape"
    right_edge = drawn[round(62 * scale) : round(78 * scale), round(15 * scale) - 1 : round(15 * scale) + 1]
    cyan = _colour_at(right_edge, BORDER).any(axis=1)
    assert 0.4 < cyan.mean() < 0.9, "the border particle's outline is dashed"
    corner = drawn[-round(20 * scale) :, -round(40 * scale) :]
    assert (corner == 255).all(axis=-1).sum() > 100, "a white scale bar in the lower right"
