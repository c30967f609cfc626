"""gOctConv: the general operator against the paper's equations, with 1-4 scales, missing links, zero widths."""
import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csnet.nn import GOctCBR, GOctConv, all_links, same_scale_links


def multiscale(widths, size=16, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, c, size // 2**k, size // 2**k, generator=g) if c else None
                 for k, c in enumerate(widths))


def test_single_scale_is_a_plain_conv():
    op = GOctConv([5], [7], kernel_size=3, dilation=2)
    x = torch.randn(2, 5, 12, 12)
    (y,) = op((x,))
    expected = F.conv2d(x, op.link_conv((0, 0)).weight, padding=2, dilation=2)
    torch.testing.assert_close(y, expected)


def test_vanilla_octconv_matches_eq2():
    op = GOctConv([4, 6], [3, 5], kernel_size=3)
    xh, xl = multiscale([4, 6])
    yh, yl = op((xh, xl))
    w = {link: op.link_conv(link).weight for link in op.links}
    conv = lambda t, k: F.conv2d(t, w[k], padding=1)  # noqa: E731
    expected_h = conv(xh, (0, 0)) + F.interpolate(conv(xl, (1, 0)), scale_factor=2, mode="bilinear",
                                                  align_corners=False)
    expected_l = conv(xl, (1, 1)) + conv(F.max_pool2d(xh, 2), (0, 1))
    torch.testing.assert_close(yh, expected_h)
    torch.testing.assert_close(yl, expected_l)


def test_cross_scale_by_four_uses_pool_and_upsample_by_four():
    op = GOctConv([2, 0, 3], [4, 0, 5])
    x0, _, x2 = multiscale([2, 0, 3], size=16)
    y0, y1, y2 = op((x0, None, x2))
    assert y1 is None
    w = {link: op.link_conv(link).weight for link in op.links}
    expected0 = F.conv2d(x0, w[(0, 0)]) + F.interpolate(F.conv2d(x2, w[(2, 0)]), size=(16, 16), mode="bilinear",
                                                        align_corners=False)
    expected2 = F.conv2d(x2, w[(2, 2)]) + F.conv2d(F.max_pool2d(x0, 4), w[(0, 2)])
    torch.testing.assert_close(y0, expected0)
    torch.testing.assert_close(y2, expected2)


def test_stride_two_average_pools_every_scale_first():
    strided = GOctConv([3, 4], [5, 6], kernel_size=3, stride=2)
    plain = GOctConv([3, 4], [5, 6], kernel_size=3)
    plain.load_state_dict(strided.state_dict())
    x = multiscale([3, 4])
    pooled = tuple(F.avg_pool2d(t, 2) for t in x)
    for a, b in zip(strided(x), plain(pooled)):
        torch.testing.assert_close(a, b)


def test_depthwise_keeps_channels_independent():
    op = GOctConv([4, 3], [4, 3], kernel_size=3, groups="depthwise")
    assert op.links == ((0, 0), (1, 1))
    x = multiscale([4, 3])
    bumped = (x[0].clone(), x[1])
    bumped[0][:, 2] += 1.0
    y, y_bumped = op(x), op(bumped)
    changed = (y[0] - y_bumped[0]).abs().amax(dim=(0, 2, 3))
    assert changed[2] > 0 and torch.all(changed[[0, 1, 3]] == 0)
    torch.testing.assert_close(y[1], y_bumped[1])


def test_group_conv_parameter_count():
    op = GOctConv([8, 4], [8, 4], kernel_size=3, groups=4)
    expected = sum(op.in_channels[i] * op.out_channels[j] * 9 // 4 for i, j in op.links)
    assert sum(p.numel() for p in op.parameters()) == expected


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="stride"):
        GOctConv([2], [2], stride=3)
    with pytest.raises(ValueError, match="outside"):
        GOctConv([2], [2], links=[(0, 1)])
    with pytest.raises(ValueError, match="groups"):
        GOctConv([3], [4], groups=2)
    with pytest.raises(ValueError, match="expects 2 scales"):
        GOctConv([2, 2], [2])(multiscale([2]))


def test_cbr_applies_bn_and_prelu_per_scale():
    cbr = GOctCBR([3, 0], [4, 5]).eval()
    assert set(cbr.norm_act.bns) == {"0", "1"}
    x = multiscale([3, 0])
    raw = cbr.conv(x)
    out = cbr(x)
    for k in range(2):
        torch.testing.assert_close(out[k], cbr.norm_act.acts[str(k)](cbr.norm_act.bns[str(k)](raw[k])))


# ----------------------------------------------------------------------------------- property-based tests
widths_strategy = st.lists(st.integers(0, 4), min_size=1, max_size=4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(in_w=widths_strategy, out_w=widths_strategy, kernel=st.sampled_from([1, 3]), stride=st.sampled_from([1, 2]),
       dilation=st.sampled_from([1, 2]), drop=st.integers(0, 2**16), data=st.data())
def test_any_scales_links_and_zero_widths(in_w, out_w, kernel, stride, dilation, drop, data):
    if not any(in_w) or not any(out_w):
        return
    candidates = all_links(in_w, out_w)
    links = [link for n, link in enumerate(candidates) if not (drop >> n) & 1] or candidates[:1]
    op = GOctConv(in_w, out_w, kernel_size=kernel, stride=stride, dilation=dilation, links=links)
    x = multiscale(in_w, size=32, batch=1, seed=data.draw(st.integers(0, 100)))
    y = op(x)
    assert len(y) == len(out_w)
    reached = {j for _, j in op.links}
    for j, t in enumerate(y):
        if j not in reached:
            assert t is None
            continue
        size = 32 // stride // 2**j
        assert t.shape == (1, out_w[j], size, size)
    # Linearity over links: the output is the sum of the single-link operators' outputs.
    total = [None] * len(out_w)
    for link in op.links:
        single = GOctConv(in_w, out_w, kernel_size=kernel, stride=stride, dilation=dilation, links=[link])
        single.link_conv(link).weight.data.copy_(op.link_conv(link).weight)
        part = single(x)[link[1]]
        total[link[1]] = part if total[link[1]] is None else total[link[1]] + part
    for a, b in zip(y, total):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # Parameters: one k x k block per link.
    assert sum(p.numel() for p in op.parameters()) == sum(in_w[i] * out_w[j] * kernel**2 for i, j in op.links)


@pytest.mark.parametrize("n_scales", [1, 2, 3, 4])
def test_simplified_instance_with_n_scales(n_scales):
    widths = [3] * n_scales
    op = GOctConv(widths, widths, kernel_size=3, groups="depthwise")
    assert op.links == tuple((k, k) for k in range(n_scales))
    assert list(same_scale_links(widths, widths)) == list(op.links)
    y = op(multiscale(widths, size=32))
    assert [t.shape[-1] for t in y] == [32 // 2**k for k in range(n_scales)]


def test_all_links_skip_empty_scales():
    assert all_links([2, 0], [0, 3]) == [(0, 1)]
    assert list(itertools.chain(all_links([1], [1, 1]))) == [(0, 0), (0, 1)]
