"""Image losses: total_variation.

kornia's ``total_variation`` semantics: the anisotropic L1 total variation of each image plane,
over the last two dimensions ``(H, W)``, every leading dimension kept. A plain torch composition
(slices, ``abs``, sums): every transform has its rules. ``abs``'s derivative at 0 (two equal
neighbours) is 0, as in kornia.

Masks (``where=``, of the per-plane loss's shape ``input.shape[:-2]``) replace a masked plane by
zeros before any arithmetic.
"""

from __future__ import annotations

from functools import partial

from torch import Tensor

from ._checks import (
    Reduction,
    check_floating,
    check_reduction,
    check_where,
    checks_config,
    fail,
    shape_str,
)
from ._modes import follows_autocast
from ._reduction import masked, reduce

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
