"""Cutouts, backgrounds, overlays and colours."""
import numpy as np
import pytest

from csnet.infer import compose


def _pair():
    image = np.full((4, 6, 3), 100, np.uint8)
    mask = np.zeros((4, 6), np.uint8)
    mask[:, 3:] = 255
    return image, mask


@pytest.mark.parametrize("spec, rgb", [("white", (255, 255, 255)), ("#00ff00", (0, 255, 0)), ("#f00", (255, 0, 0)),
                                       ("0,0,255", (0, 0, 255)), (" 1, 2, 3 ", (1, 2, 3)), ((9, 8, 7), (9, 8, 7))])
def test_parse_color(spec, rgb):
    assert compose.parse_color(spec) == rgb


@pytest.mark.parametrize("spec", ["nocolour", "1,2", (1, 2, 300), "#12345"])
def test_parse_color_errors(spec):
    with pytest.raises(ValueError, match="colour"):
        compose.parse_color(spec)


def test_cutout_and_over():
    image, mask = _pair()
    rgba = compose.cutout(image, mask)
    assert rgba.shape == (4, 6, 4) and np.array_equal(rgba[:, :, 3], mask)
    board = compose.checkerboard(4, 6, cell=2)
    assert board.shape == (4, 6, 3) and len(np.unique(board)) == 2
    flat = compose.over(rgba, board)
    assert np.array_equal(flat[:, 3:], image[:, 3:]) and np.array_equal(flat[:, :3], board[:, :3])


def test_replace_background_colour_and_image():
    image, mask = _pair()
    out = compose.replace_background(image, mask, "white")
    assert np.all(out[:, :3] == 255) and np.all(out[:, 3:] == 100)
    background = np.zeros((40, 10, 3), np.uint8)
    background[:, :, 2] = 200
    out = compose.replace_background(image, mask, background)  # scaled to cover, centre-cropped
    assert out.shape == (4, 6, 3) and np.all(out[:, :3, 2] == 200) and np.all(out[:, 3:] == 100)
    half = compose.replace_background(image, np.full((4, 6), 128, np.uint8), (0, 0, 0))
    assert np.all(np.abs(half.astype(int) - 50) <= 1)


def test_overlay_tints_only_the_salient_region():
    image, mask = _pair()
    out = compose.overlay(image, mask, color="red", opacity=0.5)
    assert np.array_equal(out[:, :3], image[:, :3])
    assert np.all(out[:, 3:, 0] > 150) and np.all(out[:, 3:, 1] == 50)
    with pytest.raises(ValueError):
        compose.overlay(image, mask, opacity=2)


def test_shape_checks():
    image, mask = _pair()
    with pytest.raises(ValueError, match="mask"):
        compose.cutout(image, mask[:2])
    with pytest.raises(ValueError, match="image"):
        compose.cutout(image[:, :, :2], mask)
