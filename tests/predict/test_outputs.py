"""What `ncseg predict` writes from a Segmentation, without running a network: here the overlay a microscopist
reads first."""

import numpy as np
from PIL import Image, ImageColor
from scipy.ndimage import binary_erosion

from ncseg.figures import BORDER, INSIDE, KEY_PX, OVERLAY_PX, TITLE_PX, class_overlay, particle_overlay
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


def test_the_class_overlay_tints_each_class_in_its_colour_outlines_it_and_leaves_the_background_grey(tmp_path):
    """A 3-class map over a grey image, drawn 9x: inside a class its colour shows through the image; its pixel
    edges are drawn in its solid colour; the background stays grey; the key names the classes, not the background."""
    class_map = np.zeros((100, 100), np.uint8)
    class_map[10:60, 10:60], class_map[70:90, 70:95] = 1, 2
    image = np.full((100, 100), 0.5)
    colours = ["#000000", "#ff2020", "#2060ff"]
    class_overlay(tmp_path / "c.png", image, class_map, ["background", "pt", "support"], colours, 0.5, "c.tif\nmodel")
    picture = np.asarray(Image.open(tmp_path / "c.png").convert("RGB")).astype(int)
    scale = OVERLAY_PX[0] / 100
    assert picture.shape == (TITLE_PX + round(100 * scale) + KEY_PX, OVERLAY_PX[0], 3)
    drawn = picture[TITLE_PX : TITLE_PX + round(100 * scale)]
    r, g, b = drawn[round(35 * scale), round(35 * scale)]  # the middle of the class-1 square
    assert r > g + 40 and r > b + 40 and g == b, "class 1 tinted red, the image still under it"
    r, g, b = drawn[round(80 * scale), round(80 * scale)]
    assert b > r + 40 and b > g, "class 2 tinted blue"
    assert len(set(drawn[round(5 * scale), round(70 * scale)])) == 1, "the background stays grey (R = G = B)"
    top_edge = drawn[round(10 * scale), round(15 * scale) : round(55 * scale)]
    assert _colour_at(top_edge, colours[1]).all(), "class 1 outlined on its top pixel edge in its solid colour"
    key = picture[-KEY_PX:]
    assert _colour_at(key, colours[1]).any() and _colour_at(key, colours[2]).any(), "a swatch for each class"
    solid_black = binary_erosion(_colour_at(key, colours[0]), np.ones((6, 6), bool))  # not text or a swatch's rim
    assert not solid_black.any(), "no swatch for the background"
