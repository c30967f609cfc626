"""Edge refinement: alpha snaps to the photo's edges, reaches 0/255 where the mask is confident, and cutouts
lose the old background's colour at their edges."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")

from csnet.infer.refine import estimate_foreground, guided_alpha, make_trimap, refine_mask, refined_cutout


def _scene(size: int = 96):
    """A red square on a blue background, and a blurry mask of it shifted by 3 pixels (a network's mask)."""
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[:] = (0, 0, 255)
    image[24:72, 24:72] = (255, 0, 0)
    truth = np.zeros((size, size), dtype=bool)
    truth[24:72, 24:72] = True
    from scipy import ndimage

    soft = ndimage.gaussian_filter(np.roll(truth, 3, axis=1).astype(np.float64), 5) * 0.88  # never opaque
    return image, truth, np.rint(soft * 255).astype(np.uint8)


def test_guided_snaps_to_the_edge_and_reaches_full_opacity():
    image, truth, mask = _scene()
    alpha = refine_mask(image, mask, "guided")
    assert mask.max() < 255 and alpha[40:56, 40:56].min() == 255
    assert alpha[:8, :8].max() == 0
    before = np.abs(mask / 255.0 - truth).mean()
    after = np.abs(alpha / 255.0 - truth).mean()
    assert after < 0.7 * before


def test_guided_accepts_float_masks_and_bounds_large_images():
    image, _, mask = _scene(96)
    a = guided_alpha(image, mask)
    b = guided_alpha(image, mask.astype(np.float32) / 255.0)
    assert a.dtype == np.float32 and np.allclose(a, b, atol=1e-4)
    small = guided_alpha(image, mask, work_side=48)  # the subsampled (fast) path still snaps
    assert small[40:56, 40:56].min() == 1.0 and small[:8, :8].max() == 0.0


def test_trimap_has_a_band_of_unknown_pixels_along_the_edge():
    _, truth, _ = _scene()
    trimap = make_trimap(truth.astype(np.float32), band=4)
    assert trimap[48, 48] == 1.0 and trimap[2, 2] == 0.0
    assert trimap[48, 24] == 0.5 and trimap[48, 20] == 0.5 and trimap[48, 29] == 1.0


def test_unknown_mode_is_an_error():
    image, _, mask = _scene(32)
    with pytest.raises(ValueError, match="unknown refinement"):
        refine_mask(image, mask, "magic")
    assert refine_mask(image, mask, None) is mask


def test_matting_and_foreground_remove_the_background_colour():
    pytest.importorskip("pymatting")
    image, truth, mask = _scene(64)
    # a 50/50 mixed edge column: colour is half red half blue
    image[24:40, 40] = (128, 0, 127)
    alpha = refine_mask(image, mask, "matting")
    assert alpha[36:42, 36:42].min() == 255 and alpha[:4, :4].max() == 0
    rgba = refined_cutout(image, mask, "matting")
    edge = (rgba[:, :, 3] > 0) & (rgba[:, :, 3] < 255)
    if edge.any():  # partial pixels carry the object's red, not the background's blue
        assert rgba[edge][:, 2].mean() < image[edge][:, 2].mean() + 1
    fg = estimate_foreground(image, np.where(truth[:64, :64], 255, 0).astype(np.uint8))
    assert np.array_equal(fg, image)  # nothing partial: colours untouched
