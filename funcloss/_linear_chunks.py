"""linear_cross_entropy's per-chunk formulas, and the in-place pass over all chunks that plain
eager mode uses (no graph is ever built through it).

The differentiable helpers (``chunk_logits``, ``row_loss``, ``chunk_gradient``) serve the
transform-safe path in ``_linear.py``; ``fused_pass`` computes the same quantities in place, with
one reused ``(chunk, V)`` buffer.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

_HALF_DTYPES = (torch.float16, torch.bfloat16)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # bf16/fp16 chunks are computed, and the weight gradient accumulated, in fp32.
    return torch.float32 if dtype in _HALF_DTYPES else dtype


# -- the formulas, per chunk of rows --------------------------------------------------------------
#
# z = softcap tanh(u / softcap) (or z = u) with u = h W^T + b; per row, with r = w_y (0 where
# ignored), k = 1 (0 where ignored), eps = label_smoothing, zeta = z_loss and S = sum_c w_c:
#     loss = A lse - a . z + zeta r lse^2,   A = (1 - eps) r + (eps / V) k S,
#                                            a = (1 - eps) r onehot(y) + (eps / V) k w
#     d loss / dz = (A + 2 zeta r lse) softmax(z) - a,   d z / du = 1 - (z / softcap)^2


class Config(NamedTuple):
    """The non-tensor arguments, passed as one (a ``None`` softcap is config, not a tensor)."""

    ignore_index: int
    label_smoothing: float
    z_loss: float
    softcap: float | None
    chunk_size: int


class Rows(NamedTuple):
    """Per-row target data: the class (0 where ignored), ignored?, k and r as above."""

    safe: Tensor
    ignored: Tensor
    keep: Tensor
    weight: Tensor

    def chunk(self, start: int, stop: int) -> Rows:
        return Rows(*(t[start:stop] for t in self))


def target_rows(
    target: Tensor, weight: Tensor | None, ignore_index: int, dtype: torch.dtype
) -> Rows:
    ignored = target == ignore_index
    safe = target.masked_fill(ignored, 0)
    keep = (~ignored).to(dtype)
    row_weight = keep if weight is None else weight.to(dtype).gather(0, safe) * keep
    return Rows(safe, ignored, keep, row_weight)


def chunks(num_rows: int, size: int) -> list[tuple[int, int]]:
    # No rows still make one (empty) chunk, so that the per-chunk results concatenate.
    if num_rows == 0:
        return [(0, 0)]
    return [(start, min(start + size, num_rows)) for start in range(0, num_rows, size)]


def chunk_logits(
    h: Tensor, linear_weight: Tensor, bias: Tensor | None, softcap: float | None
) -> tuple[Tensor, Tensor | None]:
    """A chunk's logits ``z`` and, with a softcap, ``tanh(u / softcap)`` for the chain rule."""
    u = h @ linear_weight.T if bias is None else torch.addmm(bias, h, linear_weight.T)
    if softcap is None:
        return u, None
    squashed = torch.tanh(u / softcap)
    return softcap * squashed, squashed


def weight_sum(weight: Tensor | None, num_classes: int) -> float | Tensor:
    return float(num_classes) if weight is None else weight.sum()


def target_parts(
    logits: Tensor, rows: Rows, weight: Tensor | None, label_smoothing: float
) -> tuple[Tensor, Tensor | None]:
    """Each row's ``z_y`` and, with label smoothing, ``w . z``."""
    picked = logits.gather(1, rows.safe.unsqueeze(1)).squeeze(1)
    if label_smoothing == 0:
        return picked, None
    return picked, logits.sum(1) if weight is None else logits @ weight


def row_loss(
    lse: Tensor,
    parts: tuple[Tensor, Tensor | None],
    rows: Rows,
    weight: Tensor | None,
    num_classes: int,
    label_smoothing: float,
    z_loss: float,
) -> Tensor:
    """``A lse - a . z + zeta r lse^2`` for each row of a chunk."""
    picked, dot = parts
    loss = rows.weight * (lse - picked)
    if dot is not None:
        smooth = weight_sum(weight, num_classes) * lse - dot
        loss = (1 - label_smoothing) * loss + (label_smoothing / num_classes) * rows.keep * smooth
    if z_loss > 0:
        loss = loss + z_loss * rows.weight * lse * lse
    return loss.masked_fill(rows.ignored, 0)


def coefficients(
    lse: Tensor, rows: Rows, weight: Tensor | None, num_classes: int, eps: float, z_loss: float
) -> tuple[Tensor, Tensor, Tensor]:
    """(coefficient of softmax(z), of onehot(y), of w) in ``d loss / dz``, per row."""
    picked = (1 - eps) * rows.weight
    spread = (eps / num_classes) * rows.keep
    total = picked + spread * weight_sum(weight, num_classes) if eps > 0 else picked
    if z_loss > 0:
        total = total + 2 * z_loss * rows.weight * lse
    return total, picked, spread


def chunk_gradient(
    logits: Tensor,
    squashed: Tensor | None,
    rows: Rows,
    scale: Tensor,
    weight: Tensor | None,
    config: Config,
) -> Tensor:
    """``scale * d loss / du`` for a chunk, from differentiable ops (double backward is exact)."""
    lse = torch.logsumexp(logits, 1)
    eps = config.label_smoothing
    total, picked, spread = coefficients(lse, rows, weight, logits.shape[1], eps, config.z_loss)
    g = torch.exp(logits - lse.unsqueeze(1)) * (total * scale).unsqueeze(1)
    if eps > 0:
        smooth = (spread * scale).unsqueeze(1)
        g = g - (smooth if weight is None else smooth * weight)
    g = g.scatter_add(1, rows.safe.unsqueeze(1), -(picked * scale).unsqueeze(1))
    return g if squashed is None else g * (1 - squashed * squashed)


class Cast(NamedTuple):
    """The inputs in the compute dtype (no copies unless they are bf16/fp16)."""

    input: Tensor
    linear_weight: Tensor
    bias: Tensor | None
    weight: Tensor | None

    @staticmethod
    def of(
        input: Tensor, linear_weight: Tensor, bias: Tensor | None, weight: Tensor | None
    ) -> Cast:
        dtype = compute_dtype(input.dtype)
        return Cast(
            input.to(dtype),
            linear_weight.to(dtype),
            None if bias is None else bias.to(dtype),
            None if weight is None else weight.to(dtype),
        )


# -- the in-place pass of plain eager mode: loss and scaled gradients, chunk by chunk -----------


class Gradients:
    """In-place accumulators of the input, weight and bias gradients (compute dtype, fp32 for
    bf16/fp16), fed a chunk at a time by :func:`fused_pass`."""

    def __init__(
        self, x: Cast, safe: Tensor, smoothing: bool, need: tuple[bool, bool, bool]
    ) -> None:
        self.x, self.safe, dtype = x, safe, x.input.dtype
        self.smoothing = smoothing and any(need)
        self.input = torch.empty(x.input.shape, dtype=dtype) if need[0] else None
        self.weight = torch.zeros(x.linear_weight.shape, dtype=dtype) if need[1] else None
        has_bias = x.bias is not None and need[2]
        self.bias = torch.zeros(x.linear_weight.shape[0], dtype=dtype) if has_bias else None
        # Label smoothing's -(eps / V) k w term, per chunk a rank-1 update of the weight
        # gradient: summed over chunks first, applied once in finish().
        self.spread_h = x.input.new_zeros(x.input.shape[1])
        self.spread_total = x.input.new_zeros(())
        if self.smoothing:  # (w or ones) @ W: the smoothing term's share of the input gradient
            rows = x.linear_weight
            self.weighted_rows = rows.sum(0) if x.weight is None else x.weight @ rows

    def add(self, g: Tensor, start: int, stop: int) -> None:
        """Add a chunk's explicit gradient ``g = d loss / du`` (already scaled)."""
        h = self.x.input[start:stop]
        if self.input is not None:
            torch.mm(g, self.x.linear_weight, out=self.input[start:stop])
        if self.weight is not None:
            self.weight.addmm_(g.T, h)
        if self.bias is not None:
            self.bias.add_(g.sum(0))

    def add_softmax(
        self, p: Tensor, start: int, stop: int, total: Tensor, picked: Tensor, spread: Tensor
    ) -> None:
        """Add ``g = total softmax - picked onehot(y) - spread w`` without forming it: the row
        factors scale the small ``(rows, H)`` operands of the matmuls instead of ``p``."""
        h, safe = self.x.input[start:stop], self.safe[start:stop]
        weights = self.x.linear_weight
        if self.input is not None:
            grad = torch.mm(p, weights, out=self.input[start:stop]).mul_(total.unsqueeze(1))
            grad.sub_(picked.unsqueeze(1) * weights.index_select(0, safe))
            if self.smoothing:
                grad.sub_(spread.unsqueeze(1) * self.weighted_rows)
        if self.weight is not None:
            self.weight.addmm_(p.T, total.unsqueeze(1) * h)
            self.weight.index_add_(0, safe, picked.unsqueeze(1) * h, alpha=-1)
        if self.bias is not None:
            self.bias.add_(p.T @ total).index_add_(0, safe, picked, alpha=-1)
        if self.smoothing:
            self.spread_h.add_(spread @ h)
            self.spread_total.add_(spread.sum())

    def finish(self) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        if self.smoothing:
            class_weight = self.x.weight
            if class_weight is None:
                class_weight = self.spread_h.new_ones(self.x.linear_weight.shape[0])
            if self.weight is not None:
                self.weight.sub_(torch.outer(class_weight, self.spread_h))
            if self.bias is not None:
                self.bias.sub_(class_weight * self.spread_total)
        return self.input, self.weight, self.bias


def fused_pass(
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    bias: Tensor | None,
    weight: Tensor | None,
    scale: Tensor,
    config: Config,
    need: tuple[bool, bool, bool] = (True, True, True),
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """Per-row loss and ``scale``-weighted gradients (input, weight, bias), in place, no graph.

    The gradients come in the compute dtype: the weight and bias gradients accumulate in fp32
    (fp64 for fp64 inputs) whatever the input dtype.
    """
    x = Cast.of(input, linear_weight, bias, weight)
    dtype, (num_rows, num_classes) = x.input.dtype, (input.shape[0], linear_weight.shape[0])
    rows = target_rows(target, weight, config.ignore_index, dtype)
    eps, z_loss, softcap = config.label_smoothing, config.z_loss, config.softcap
    scale = scale.to(dtype).expand(num_rows).masked_fill(rows.ignored, 0)
    grads = Gradients(x, rows.safe, eps > 0 and softcap is None, need)
    # One (chunk, V) buffer (two with a softcap), reused by every chunk: no page faults after the
    # first chunk, whatever the chunk size.
    size = min(config.chunk_size, num_rows)
    buffer = torch.empty(size, num_classes, dtype=dtype)
    squash_buffer = torch.empty(0 if softcap is None else size, num_classes, dtype=dtype)
    losses = []
    for start, stop in chunks(num_rows, size):
        h, chunk_rows, chunk_scale = x.input[start:stop], rows.chunk(start, stop), scale[start:stop]
        u = buffer[: stop - start]
        if x.bias is None:
            torch.mm(h, x.linear_weight.T, out=u)
        else:
            torch.addmm(x.bias, h, x.linear_weight.T, out=u)
        squashed = None
        if softcap is not None:
            squashed = torch.div(u, softcap, out=squash_buffer[: stop - start]).tanh_()
            torch.mul(squashed, softcap, out=u)
        parts = target_parts(u, chunk_rows, x.weight, eps)
        top = u.amax(1)
        p = torch.softmax(u, 1, out=u)
        lse = top - p.amax(1).log()  # the largest probability is 1 / sum(exp(z - top))
        losses.append(row_loss(lse, parts, chunk_rows, x.weight, num_classes, eps, z_loss))
        if not any(need):
            continue
        total, picked, spread = coefficients(lse, chunk_rows, x.weight, num_classes, eps, z_loss)
        total, picked, spread = total * chunk_scale, picked * chunk_scale, spread * chunk_scale
        if squashed is None:
            grads.add_softmax(p, start, stop, total, picked, spread)
            continue
        # d loss / du = (total p - picked onehot(y) - spread w) (1 - tanh^2), formed in place.
        g = p.mul_(total.unsqueeze(1))
        if eps > 0:
            g.sub_(spread.unsqueeze(1) if x.weight is None else spread.unsqueeze(1) * x.weight)
        g.scatter_add_(1, chunk_rows.safe.unsqueeze(1), -picked.unsqueeze(1))
        grads.add(g.mul_(squashed.square_().neg_().add_(1)), start, stop)
    return torch.cat(losses), *grads.finish()


def cast_like(grad: Tensor | None, like: Tensor | None) -> Tensor | None:
    return None if grad is None or like is None else grad.to(like.dtype)
