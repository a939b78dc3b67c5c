"""Image losses: total_variation, ssim_loss, psnr_loss.

kornia's ``total_variation`` semantics: the anisotropic L1 total variation of each image plane,
over the last two dimensions ``(H, W)``, every leading dimension kept. A plain torch composition
(slices, ``abs``, sums): every transform has its rules. ``abs``'s derivative at 0 (two equal
neighbours) is 0, as in kornia.

``ssim_loss``: 1 - SSIM per pixel of each plane (Wang et al. 2004), the local moments from one
separable Gaussian filtering (reflect padding, two 1-D ``conv2d`` over the five moment images
stacked along the batch), so every transform has its rules; its denominators are at least
``c1 * c2 > 0``, so identical, constant and zero images have finite values and derivatives.
``psnr_loss``: -PSNR per image ``(C, H, W)``, with ``eps`` (relative to ``data_range ** 2``)
added to the MSE so that identical images have a finite value (PSNR capped at
``10 log10(1 / eps)``) and a zero, finite gradient.

Masks: total_variation's (``input.shape[:-2]``) and psnr_loss's (``input.shape[:-3]``) replace a
masked plane or image by a constant before any arithmetic; ssim_loss's (of its per-pixel map)
select the pixels that count, and a plane whose every pixel is masked is replaced likewise (a
windowed loss reads its neighbours: a masked pixel of a partly included plane is still read).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import (
    Reduction,
    check_floating,
    check_index,
    check_non_negative,
    check_positive,
    check_reduction,
    check_same_shape,
    check_where,
    checks_config,
    eager_mode,
    fail,
    plain_eager,
    promoted_dtype,
    shape_str,
    value_reads_allowed,
)
from ._function import SlopeRule, SlopeStep
from ._modes import follows_autocast
from ._reduction import masked, reduce
from ._softmax_ce import compute_dtype

Padding = Literal["same", "valid"]

_TOTAL_VARIATION_CONFIG = partial(check_reduction, "total_variation")


@follows_autocast("promoted")
@checks_config(_TOTAL_VARIATION_CONFIG)
def total_variation(
    input: Tensor, reduction: Reduction = "sum", *, where: Tensor | None = None
) -> Tensor:
    r"""Total variation of images: the sum of absolute differences between neighbouring pixels,
    a smoothness prior for denoising, deblurring and image generation.

    The anisotropic L1 total variation of each plane (kornia's ``total_variation``):

    .. math::
        \mathrm{TV}(x) = \sum_{i, j} |x_{i+1, j} - x_{i, j}| + \sum_{i, j} |x_{i, j+1} - x_{i, j}|

    over the last two dimensions; each leading index (batch, channel) is a plane of its own.

    kornia returns the per-plane values ``(*,)`` for its default ``reduction="sum"`` and has no
    ``"none"``; funcloss's ``reduction`` is torch's, over those per-plane values: ``"none"``
    gives kornia's ``(*,)``, the default ``"sum"`` their sum (a scalar, what a training loop
    minimises), ``"mean"`` their mean. kornia's ``reduction="mean"`` (each direction's
    differences averaged over their count, per plane) is not offered. kornia's module
    ``TotalVariation`` always returns ``(*,)``; funcloss's takes ``reduction``.

    Args:
        input: images ``(*, H, W)`` (at least two dimensions), floating dtype; a dimension of
            size 1 has no neighbours along it and adds 0.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``, over the planes ``(*,)``.
        where: optional bool mask of the planes that count, broadcastable to
            ``input.shape[:-2]``; a masked plane's pixels are not read (``"mean"`` divides by
            the number of included planes).

    Returns:
        ``input.shape[:-2]`` for ``"none"`` (0 where masked), else a 0-dim tensor.

    Raises:
        TypeError: non-floating input, a non-bool ``where``.
        ValueError: an input with fewer than two dimensions, bad ``reduction``.

    Examples:
        >>> image = torch.tensor([[0.0, 1.0], [3.0, 1.0]])
        >>> funcloss.total_variation(image)  # |3 - 0| + |1 - 1| + |1 - 0| + |1 - 3|
        tensor(6.)
        >>> funcloss.total_variation(torch.ones(2, 3, 4, 4), "none").shape
        torch.Size([2, 3])

    References:
        Rudin, Osher and Fatemi, "Nonlinear total variation based noise removal algorithms",
        Physica D 1992; kornia.losses.total_variation.
    """
    fn = "total_variation"
    check_floating(fn, input=input)
    if input.dim() < 2:
        fail(
            ValueError,
            fn,
            "input",
            "have shape (*, H, W), at least 2 dimensions",
            shape_str(input.shape),
        )
    _TOTAL_VARIATION_CONFIG(reduction=reduction)
    if where is not None:
        check_where(fn, where, input.shape[:-2])
        input = masked(where.unsqueeze(-1).unsqueeze(-1), input)
    vertical = (input[..., 1:, :] - input[..., :-1, :]).abs().sum((-2, -1))
    horizontal = (input[..., :, 1:] - input[..., :, :-1]).abs().sum((-2, -1))
    return reduce(vertical + horizontal, reduction, where=where)


# -- ssim_loss -------------------------------------------------------------------------------


def _check_ssim_config(
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    k1: float = 0.01,
    k2: float = 0.03,
    padding: str = "same",
    reduction: str = "mean",
) -> None:
    fn = "ssim_loss"
    check_index(fn, window_size=window_size)
    if window_size < 1 or window_size % 2 == 0:
        fail(ValueError, fn, "window_size", "be an odd positive int", window_size)
    check_positive(fn, sigma=sigma, data_range=data_range, k1=k1, k2=k2)
    if padding not in ("same", "valid"):
        fail(ValueError, fn, "padding", "be one of 'same' | 'valid'", repr(padding))
    check_reduction(fn, reduction)


def _gaussian_window(window_size: int, sigma: float, dtype: torch.dtype) -> Tensor:
    """The sampled Gaussian ``exp(-n^2 / 2 sigma^2)`` at the offsets ``n`` of the taps from the
    centre, normalised to sum 1 (kornia's ``get_gaussian_kernel1d``), computed in float64."""
    offsets = torch.arange(window_size, dtype=torch.float64) - window_size // 2
    taps = torch.exp(-(offsets**2) / (2 * sigma**2))
    return (taps / taps.sum()).to(dtype)


def _blur(planes: Tensor, window: Tensor, same: bool) -> Tensor:
    """Each plane of ``planes`` ``(B, H, W)`` filtered with the separable window: reflect-padded
    by the radius on every side for ``same``, unpadded (``H - 2r, W - 2r``) otherwise. One
    depthwise ``conv2d`` per direction, the planes as channels (several times faster on the CPU
    than the planes as a batch of one channel)."""
    radius = window.numel() // 2
    count, height, width = planes.shape
    if count == 0:  # conv2d takes no zero-channel input: nothing to filter
        crop = 0 if same else 2 * radius
        return planes[:, : height - crop, : width - crop]
    x = planes.unsqueeze(0)
    if same and radius > 0:
        x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, window.view(1, 1, 1, -1).expand(count, 1, 1, -1), groups=count)
    return F.conv2d(x, window.view(1, 1, -1, 1).expand(count, 1, -1, 1), groups=count).squeeze(0)


def _ssim_map(
    input: Tensor,
    target: Tensor,
    window: Tensor,
    c1: float,
    c2: float,
    same: bool,
) -> Tensor:
    """The SSIM map of planes ``(P, H, W)``.

    The moments are filtered from the images less a per-plane constant (the smallest pixel of
    the pair, detached): the variances and covariance do not change (the window sums to 1),
    but their ``E[x^2] - E[x]^2`` no longer cancels an offset's square in float32 (images
    around 1000 at ``data_range=1``); the images less it lie in ``[0, range]``, whose rounding
    is that of ordinary images (a mean would move the zeros of a sparse image off 0).

    A window holding an infinite pixel has SSIM 0, with zero derivatives: the limit as that
    pixel grows (the luminance term falls as 1 / mu); its pixels read 0 in the other windows'
    arithmetic. In plain eager mode on the CPU with value reads on, one read of the map finds
    whether any of it is not finite; only then are infinite pixels looked for, and a float32
    or half map is recomputed in float64 (pixels beyond 1e19 overflow float32's squares)."""
    reads = value_reads_allowed() and input.is_cpu and plain_eager(input, target)
    if reads:
        similarity = _ssim_of(input, target, window, c1, c2, same)
        if bool(similarity.isfinite().all()):  # the one read
            return similarity
    infinite = input.isinf() | target.isinf()
    input, target = torch.where(infinite, 0, input), torch.where(infinite, 0, target)
    touched = _blur(infinite.to(input.dtype), window, same) > 0
    if reads and input.dtype != torch.float64:
        wide = _ssim_of(input.double(), target.double(), window.double(), c1, c2, same)
        similarity = wide.to(input.dtype)
    else:
        similarity = _ssim_of(input, target, window, c1, c2, same)
    return torch.where(touched, 0, similarity)


def _ssim_of(
    input: Tensor, target: Tensor, window: Tensor, c1: float, c2: float, same: bool
) -> Tensor:
    offset = torch.minimum(input.amin((-2, -1), keepdim=True), target.amin((-2, -1), keepdim=True))
    offset = offset.detach()
    x, y = input - offset, target - offset
    moments = _blur(torch.cat([x, y, x * x, y * y, x * y]), window, same)
    mean_x, mean_y, xx, yy, xy = moments.chunk(5)
    var_x = xx - mean_x * mean_x
    var_y = yy - mean_y * mean_y
    covariance = xy - mean_x * mean_y
    mean_x, mean_y = mean_x + offset, mean_y + offset
    luminance = (2 * mean_x * mean_y + c1) / (mean_x * mean_x + mean_y * mean_y + c1)
    return luminance * (2 * covariance + c2) / (var_x + var_y + c2)


def _check_images(fn: str, input: Tensor, target: Tensor, dims: int, layout: str) -> None:
    check_floating(fn, input=input, target=target)
    if input.dim() < dims:
        fail(
            ValueError,
            fn,
            "input",
            f"have shape {layout}, at least {dims} dimensions",
            shape_str(input.shape),
        )
    check_same_shape(fn, input=input, target=target)


@follows_autocast("promoted")
@checks_config(_check_ssim_config)
def ssim_loss(
    input: Tensor,
    target: Tensor,
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    k1: float = 0.01,
    k2: float = 0.03,
    padding: Padding = "same",
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Structural dissimilarity: one minus the structural similarity index (SSIM) of each
    pixel, comparing local means, variances and covariance of two images; a perceptual image
    reconstruction loss (super-resolution, denoising, self-supervised depth).

    .. math::
        \ell = 1 - \mathrm{SSIM}, \qquad
        \mathrm{SSIM} = \frac{(2 \mu_x \mu_y + c_1)(2 \sigma_{xy} + c_2)}
        {(\mu_x^2 + \mu_y^2 + c_1)(\sigma_x^2 + \sigma_y^2 + c_2)}

    with :math:`\mu`, :math:`\sigma^2`, :math:`\sigma_{xy}` the local moments under a Gaussian
    window (``window_size`` taps, standard deviation ``sigma``) at each pixel of each plane,
    :math:`c_1 = (k_1 L)^2`, :math:`c_2 = (k_2 L)^2` and :math:`L` = ``data_range``. In
    :math:`[0, 2]`; 0 for identical images.

    kornia's ``ssim_loss`` is ``clamp((1 - SSIM) / 2, 0, 1)`` (half this, and clamped), with
    ``eps=1e-12`` added to its denominator: ``kornia.losses.ssim_loss(x, y, w, eps=0.0)`` equals
    ``ssim_loss(x, y, window_size=w) / 2``. Its window (sigma 1.5 fixed), reflect ``"same"``
    padding, ``"valid"`` crop, ``max_val`` (here ``data_range``) and per-pixel ``"none"`` are
    these. kornia takes only ``(B, C, H, W)``; this takes any leading dimensions. MONAI's
    ``SSIMLoss(spatial_dims=2)`` filters unpadded (``padding="valid"``), averages each image's
    map, and returns 1 minus that: its ``"mean"`` equals this one with ``padding="valid"``; it
    computes in float32 whatever the input's dtype.

    The denominators are at least :math:`c_1 c_2 > 0` (the variances are sums of squares, up to
    rounding), so identical, constant and zero images have a finite loss and finite derivatives
    of every order; the gradient at identical images is 0.

    Args:
        input: images ``(*, H, W)`` (at least two dimensions: each leading index, batch and
            channel, is a plane of its own), floating dtype.
        target: the reference images, ``input``'s shape.
        window_size: the Gaussian window's taps, an odd positive int. ``padding="same"`` needs
            ``H, W > window_size // 2``, ``"valid"`` needs ``H, W >= window_size``.
        sigma: the window's standard deviation in pixels, positive.
        data_range: :math:`L`, the range of the pixel values (1 for ``[0, 1]``, 255 for 8-bit),
            positive. Values are not rescaled.
        k1: the luminance constant, positive.
        k2: the contrast constant, positive.
        padding: ``"same"`` (reflect-padded, the map of ``input``'s shape, kornia's default) or
            ``"valid"`` (only full windows, ``(*, H - 2r, W - 2r)`` with ``r = window_size //
            2``, as in Wang et al.'s MATLAB code and MONAI).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``, over the map's pixels.
        where: optional bool mask of the map's pixels that count, broadcastable to the map's
            shape; ``"mean"`` divides by the number of included pixels. A masked pixel of a
            plane with included pixels is still read by its neighbours' windows; a plane whose
            every pixel is masked is not read.

    Returns:
        The map ``(*, H, W)`` (``"valid"``: cropped) for ``"none"`` (0 where masked), else a
        0-dim tensor.

    Raises:
        TypeError: non-floating images, a non-int ``window_size``, a non-bool ``where``.
        ValueError: images with fewer than two dimensions, of different shapes, or smaller than
            the window; an even or non-positive ``window_size``; a non-positive ``sigma``,
            ``data_range``, ``k1`` or ``k2``; a bad ``padding`` or ``reduction``.

    Examples:
        >>> x = torch.linspace(0, 1, 64).reshape(1, 1, 8, 8)
        >>> funcloss.ssim_loss(x, x, window_size=5)
        tensor(0.)
        >>> funcloss.ssim_loss(x, 1 - x, window_size=5) > 1  # anti-correlated
        tensor(True)
        >>> funcloss.ssim_loss(x, x, window_size=5, reduction="none").shape
        torch.Size([1, 1, 8, 8])

    References:
        Wang, Bovik, Sheikh and Simoncelli, "Image quality assessment: from error visibility to
        structural similarity", IEEE TIP 2004; kornia.losses.ssim_loss; monai.losses.SSIMLoss.
    """
    fn = "ssim_loss"
    _check_images(fn, input, target, 2, "(*, H, W)")
    _check_ssim_config(
        window_size=window_size,
        sigma=sigma,
        data_range=data_range,
        k1=k1,
        k2=k2,
        padding=padding,
        reduction=reduction,
    )
    same = padding == "same"
    height, width = input.shape[-2:]
    smallest = window_size // 2 + 1 if same else window_size
    if min(height, width) < smallest:
        fail(
            ValueError,
            fn,
            "input",
            f"have H and W of at least {smallest} for window_size={window_size} and "
            f"padding={padding!r}",
            shape_str(input.shape),
        )
    radius = 0 if same else window_size // 2
    map_shape = (*input.shape[:-2], height - 2 * radius, width - 2 * radius)
    if where is not None:
        check_where(fn, where, map_shape)
        read = where.expand(map_shape).flatten(-2).any(-1)[..., None, None]
        input, target = masked(read, input), masked(read, target)
    dtype = promoted_dtype(input, target)
    work = compute_dtype(dtype)
    similarity = _ssim_map(
        input.to(work).reshape(-1, height, width),
        target.to(work).reshape(-1, height, width),
        _gaussian_window(window_size, sigma, work),
        (k1 * data_range) ** 2,
        (k2 * data_range) ** 2,
        same,
    )
    loss = (1 - similarity).reshape(map_shape).to(dtype)
    return reduce(loss, reduction, where=where)


# -- psnr_loss -------------------------------------------------------------------------------

# the default eps: the MSE's floor in units of data_range ** 2, PSNR capped at 100 dB
_PSNR_EPS = 1e-10

# 10 log10(u) = _DECIBEL ln(u)
_DECIBEL = 10 / math.log(10)


def _psnr_fast(input: Tensor, target: Tensor, floor: float) -> bool:
    """A plain eager CPU call on contiguous float32/float64 images of one dtype, the target
    taking no gradient, its one host read allowed (:class:`set_value_checks`), and an MSE
    floor ``eps L^2`` that float arithmetic holds exactly enough: at least ``tiny / eps`` of
    the dtype (so squares that underflow move the MSE by less than a rounding) and finite in
    it. Then :class:`_EagerPsnr` may run unscaled."""
    if not (
        type(input) is Tensor
        and type(target) is Tensor
        and input.dtype in _FAST_DTYPES
        and input.dtype == target.dtype
        and input.is_cpu
        and target.is_cpu
        and not target.requires_grad
        and input.is_contiguous()
        and target.is_contiguous()
        and value_reads_allowed()
        and eager_mode(input, target)
    ):
        return False
    info = torch.finfo(input.dtype)
    return info.tiny / info.eps <= floor <= info.max


_FAST_DTYPES = (torch.float32, torch.float64)


def _squared_norms(diff: Tensor) -> Tensor:
    """``sum d^2`` over the last dimension of ``(B, M)`` differences, one fused ``vector_norm``
    per block of ``_BLOCK`` entries (a single norm accumulates serially, which loses
    precision with length; blocks keep it at ``sum``'s)."""
    whole = diff.shape[-1] // _BLOCK * _BLOCK
    head = torch.linalg.vector_norm(diff[:, :whole].unflatten(1, (-1, _BLOCK)), dim=-1)
    tail = torch.linalg.vector_norm(diff[:, whole:], dim=-1)
    return head.square().sum(-1) + tail.square()


# 4096 float32 entries per serial accumulation keep the sum as accurate as torch's ``sum``.
_BLOCK = 4096


def _psnr_coefficients(diff: Tensor, floor: float, squares: Tensor) -> tuple[Tensor, Tensor]:
    """Per image of ``(B, M)`` differences whose squares sum to ``squares``: ``MSE + eps L^2``
    and the slope's coefficient, ``d loss / d x = coefficient (x - y)`` with coefficient
    ``20 / (ln 10 M (MSE + eps L^2))``."""
    size = diff.shape[-1]
    floored = squares / size + floor
    return floored, (2 * _DECIBEL / size) / floored


class _EagerPsnr(SlopeStep):
    """-PSNR per image in plain eager mode (``_psnr_fast``; ``config``: the MSE's floor and
    ``log(data_range)``), unscaled: one difference, which the forward keeps as the slope and
    the backward scales in place into the gradient (:class:`SlopeStep`). The caller reads
    whether the result is finite (an inf or NaN pixel, squares that overflow): if not, the
    scaled composition answers. The ``(B,)`` coefficients are kept, so a second backward of a
    retained graph gives the same bits."""


def _psnr_step(
    input: Tensor, target: Tensor, config: tuple[float, float]
) -> tuple[Tensor, Tensor, Tensor]:
    floor, log_range = config
    diff = torch.sub(input, target)
    flat = diff.view(-1, math.prod(input.shape[-3:]))
    floored, coefficients = _psnr_coefficients(flat, floor, _squared_norms(flat))
    value = floored.log_().sub_(2 * log_range).mul_(_DECIBEL).view(input.shape[:-3])
    return value, diff, coefficients


def _psnr_factor(coefficients: Tensor, grad: Tensor) -> Tensor:
    return (coefficients * grad.reshape(-1)).view(*grad.shape, 1, 1, 1)


def _psnr_scale(
    slope: Tensor, grad: Tensor, config: tuple[float, float], coefficients: Tensor
) -> Tensor:
    return slope.mul_(_psnr_factor(coefficients, grad))


def _psnr_gradient(
    input: Tensor, target: Tensor, grad: Tensor, config: tuple[float, float], coefficients: Tensor
) -> Tensor:
    diff = input - target
    if torch.is_grad_enabled():  # create_graph: differentiable (a norm's is not at 0)
        flat = diff.view(-1, math.prod(input.shape[-3:]))
        coefficients = _psnr_coefficients(flat, config[0], flat.square().sum(-1))[1]
    return diff * _psnr_factor(coefficients, grad)


_PSNR_RULE = SlopeRule(_psnr_step, _psnr_scale, _psnr_gradient)


def _check_psnr_config(
    *, data_range: float = 1.0, eps: float = _PSNR_EPS, reduction: str = "mean"
) -> None:
    fn = "psnr_loss"
    check_positive(fn, data_range=data_range)
    check_non_negative(fn, eps=eps)
    check_reduction(fn, reduction)


@follows_autocast("promoted")
@checks_config(_check_psnr_config)
def psnr_loss(
    input: Tensor,
    target: Tensor,
    *,
    data_range: float = 1.0,
    eps: float = _PSNR_EPS,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Negative peak signal-to-noise ratio, in decibels, of each image: an MSE loss on a log
    scale, which weighs each image's error by its inverse.

    .. math::
        \ell = -\mathrm{PSNR} = 10 \log_{10}\left(\frac{\mathrm{MSE}}{L^2} + \varepsilon\right),
        \qquad \mathrm{MSE} = \frac{1}{CHW} \sum_{c, i, j} (x_{cij} - y_{cij})^2

    per image ``(C, H, W)``, with :math:`L` = ``data_range``. :math:`\varepsilon` = ``eps``
    floors the MSE at ``eps * L**2``: identical images give :math:`10 \log_{10} \varepsilon`
    (-100 dB by default) and a zero gradient, where ``eps=0`` gives kornia's ``-inf`` and a NaN
    gradient. Above the floor the difference is :math:`10 \log_{10}(1 + \varepsilon L^2 /
    \mathrm{MSE})`, at most 4.3e-4 dB for an MSE of 1e-6 :math:`L^2` (60 dB).

    kornia's ``psnr_loss(x, y, max_val)`` pools one MSE over the whole tensor (every image of
    a batch together) and returns a scalar; this is per image, reduced by ``reduction``. The
    two agree on one image; kornia's batch value is ``psnr_loss(x.reshape(-1, H, W),
    y.reshape(-1, H, W), data_range=max_val, eps=0.0)`` (the batch as one image).

    Args:
        input: images ``(*, C, H, W)`` (at least three dimensions; a grayscale batch is
            ``(N, 1, H, W)``), floating dtype.
        target: the reference images, ``input``'s shape.
        data_range: :math:`L`, the range of the pixel values (kornia's ``max_val``), positive.
            Values are not rescaled.
        eps: the MSE's floor in units of :math:`L^2`, non-negative; 0 for the plain formula.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``, over the images ``(*,)``.
        where: optional bool mask of the images that count, broadcastable to
            ``input.shape[:-3]``; a masked image's pixels are not read (``"mean"`` divides by
            the number of included images).

    Returns:
        ``input.shape[:-3]`` for ``"none"`` (0 where masked), else a 0-dim tensor.

    Raises:
        TypeError: non-floating images, a non-bool ``where``.
        ValueError: images with fewer than three dimensions or of different shapes, a
            non-positive ``data_range``, a negative ``eps``, a bad ``reduction``.

    Examples:
        >>> x = torch.zeros(1, 2, 2)
        >>> funcloss.psnr_loss(x, x + 0.1)  # MSE 0.01: 20 dB
        tensor(-20.)
        >>> funcloss.psnr_loss(x, x)  # identical: capped at 10 log10(1 / eps)
        tensor(-100.0000)

    References:
        kornia.losses.psnr_loss; Wang and Bovik, "Mean squared error: love it or leave it?",
        IEEE Signal Processing Magazine 2009.
    """
    fn = "psnr_loss"
    _check_images(fn, input, target, 3, "(*, C, H, W)")
    _check_psnr_config(data_range=data_range, eps=eps, reduction=reduction)
    floor = eps * data_range * data_range  # eps L^2, the MSE's floor
    if where is None and _psnr_fast(input, target, floor):
        loss = _EagerPsnr.apply(_PSNR_RULE, input, target, (floor, math.log(data_range)))
        value = reduce(loss, reduction)
        if math.isfinite(float((value if reduction != "none" else loss.sum()).detach())):
            return value  # one host read; else an MSE is inf or nan: the scaled road
    if where is not None:
        check_where(fn, where, input.shape[:-3])
        images = where[..., None, None, None]
        # a masked image: MSE 1, where log10 and its derivatives are finite whatever eps
        input, target = masked(images, input, 1.0), masked(images, target)
    # MSE / L^2 = m u^2 with the images in units of s = max(|pixel|, L) per image (detached):
    # m <= 4 and u = s / L >= 1, so log(m u^2 + eps) = 2 log u + log(m + eps / u^2) cannot
    # overflow where squared errors of float32 pixels near 3e38 would
    scale = torch.maximum(input.abs().amax((-3, -2, -1)), target.abs().amax((-3, -2, -1)))
    scale = scale.clamp_min(data_range).detach()
    unit = scale[..., None, None, None]
    error = ((input / unit - target / unit) ** 2).mean((-3, -2, -1))
    log_ratio = torch.log(scale) - math.log(data_range)  # s / L itself may overflow
    scaled_floor = eps * (data_range / scale) ** 2
    loss = _DECIBEL * (2 * log_ratio + torch.log(error + scaled_floor))
    return reduce(loss, reduction, where=where)
