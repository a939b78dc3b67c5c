"""Small numeric building blocks shared by the loss families."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import in_place_safe, plain_eager
from ._function import custom_backward

# F.softplus is exactly ``x`` above this: there e^-x is below float64's resolution relative
# to x, and exp(40) is finite in every dtype's compute type (half precision computes in fp32).
_SOFTPLUS_LINEAR_ABOVE = 40.0


def softplus(x: Tensor, beta: float = 1.0) -> Tensor:
    """``log(1 + exp(x))`` without overflow, exact to the dtype's rounding everywhere
    (``beta=-1``: ``-softplus(-x)``, the same bits in one op).

    ``F.softplus`` with its linear cut-off moved from 20 to 40 (where the cut-off is exact in
    float64 too): one fused op forward and one backward (``logaddexp`` costs a dozen in
    backward), with exact first and second derivatives and batching rules for every transform
    (``F.logsigmoid`` warns under ``vmap(hessian)`` on torch 2.13).
    """
    return F.softplus(x, beta, _SOFTPLUS_LINEAR_ABOVE)


def times(coefficient: Tensor, value: Tensor) -> Tensor:
    """``coefficient * value``, and 0 where ``coefficient`` is 0 even for an infinite ``value``:
    the limit of a term that is absent (``0 * inf`` would be nan).

    Its derivatives are the product's: ``value`` (clamped to the dtype's range where the
    coefficient is 0) with respect to ``coefficient``, and ``coefficient`` with respect to
    ``value``. A NaN ``value`` stays NaN.
    """
    big = torch.finfo(value.dtype).max
    return coefficient * torch.where(coefficient == 0, value.clamp(-big, big), value)


def _logistic_terms_forward(input: Tensor, target: Tensor) -> Tensor:
    if in_place_safe(input, target):  # the Function's forward: fresh buffers, no graph
        negative = softplus(-input).mul_(target).masked_fill_(target == 0, 0.0)
        positive = softplus(input).mul_(1 - target).masked_fill_(target == 1, 0.0)
        return negative.add_(positive)
    return times(target, softplus(-input)) + times(1 - target, softplus(input))


_logistic_terms_function = custom_backward(_logistic_terms_forward)


@_logistic_terms_function.backward
def _logistic_terms_backward(
    grad: Tensor, input: Tensor, target: Tensor
) -> tuple[Tensor, Tensor | None]:
    # d/dx = sigmoid(x) - y;  d/dy = softplus(-x) - softplus(x) (each clamped where its
    # coefficient is 0, as times' derivative)
    if in_place_safe(grad, input, target):
        grad_input = torch.sigmoid(input).sub_(target).mul_(grad)
    else:
        grad_input = (torch.sigmoid(input) - target) * grad
    # in plain eager mode a target that does not require grad takes none (under a torch.func
    # transform requires_grad does not tell, and the gradient is always computed)
    if not target.requires_grad and plain_eager(target):
        return grad_input, None
    return grad_input, grad * _logistic_terms_target_slope(input, target)


def _logistic_terms_target_slope(input: Tensor, target: Tensor) -> Tensor:
    big = torch.finfo(input.dtype).max
    negative, positive = softplus(-input), softplus(input)
    negative = torch.where(target == 0, negative.clamp(-big, big), negative)
    positive = torch.where(target == 1, positive.clamp(-big, big), positive)
    return negative - positive


@_logistic_terms_function.jvp
def _logistic_terms_jvp(input_t: Tensor, target_t: Tensor, input: Tensor, target: Tensor) -> Tensor:
    slope = torch.sigmoid(input) - target
    return slope * input_t + _logistic_terms_target_slope(input, target) * target_t


def logistic_step_terms(input: Tensor, target: Tensor) -> Tensor:
    """``(1 - y) softplus(x) + y softplus(-x)`` in three fresh buffers: for an eager step's
    forward (no graph). ``softplus(x, beta=-1)`` is ``-softplus(-x)`` in one op. An
    infinite logit makes a term ``0 * inf = nan``: the caller tests the sum and reruns the
    composition (:func:`logistic_terms`), which counts such a term 0."""
    # lerp(softplus(x), softplus(-x), y): exactly one term at y = 0 or 1, and for other targets
    # a sum of two non-negative terms in either of lerp's branches (``softplus(-x) - softplus(x)``
    # is ``-x``): no cancellation. Four ops (the product form takes five).
    return torch.lerp(softplus(input), softplus(input, -1.0).neg_(), target)


# The chunk of the half-precision steps, in elements (1 MiB of float32): its float32 copies stay
# in cache, and the Python loop is ~30 turns at 8192x1000.
FLOAT_CHUNK = 2**18


def float_chunks(
    input: Tensor, target: Tensor, dtype: torch.dtype = torch.float32
) -> Iterator[tuple[Tensor, Tensor, int]]:
    """Chunks of ``FLOAT_CHUNK`` entries of flat ``input`` and ``target``, in ``dtype``, and
    where each starts: a bf16 step computes in float32 without a float32 copy of its inputs (in
    the inputs' own dtype, the chunks are views: a step's temporaries stay in cache). A
    converted chunk is written into one buffer per tensor that every chunk reuses (the caller
    is done with a chunk before it asks for the next): a fresh one per chunk costs page faults."""
    size = min(input.numel(), FLOAT_CHUNK)
    buffers = [
        None if t.dtype == dtype else torch.empty(size, dtype=dtype, device=t.device)
        for t in (input, target)
    ]

    def part(t: Tensor, buffer: Tensor | None, start: int, stop: int) -> Tensor:
        chunk = t[start:stop]
        return chunk if buffer is None else buffer[: chunk.numel()].copy_(chunk)

    for start in range(0, input.numel(), FLOAT_CHUNK):
        stop = start + FLOAT_CHUNK
        x, y = (part(t, b, start, stop) for t, b in zip((input, target), buffers, strict=True))
        yield x, y, start


def float32_gradient(
    input: Tensor, target: Tensor, factor: Tensor, term: Callable[[Tensor, Tensor], Tensor]
) -> Tensor:
    """``term(x, y) factor`` of half-precision ``input`` and ``target`` (one shape), computed
    in float32 and rounded once to ``input``'s dtype: by chunks (in cache, no float32 copy of
    the inputs), or in one differentiable expression when ``create_graph`` differentiates it.
    ``term`` is out of place (its result is scaled in place)."""
    if torch.is_grad_enabled():
        return (term(input.float(), target.float()) * factor).to(input.dtype)
    result = torch.empty(input.numel(), dtype=input.dtype, device=input.device)
    for x, y, start in float_chunks(input.reshape(-1), target.reshape(-1)):
        result[start : start + FLOAT_CHUNK] = term(x, y).mul_(factor)
    return result.view(input.shape)


def sigmoid_slope(input: Tensor, target: Tensor) -> Tensor:
    """``sigmoid(x) - y``: the slope of the logistic losses (a :func:`float32_gradient` term)."""
    return torch.sigmoid(input) - target


def chunk_total(parts: list[Tensor]) -> Tensor:
    """The sum of the chunks' sums."""
    return parts[0] if len(parts) == 1 else torch.stack(parts).sum()


# Below this many elements the Function's fixed Python cost per call outweighs the passes and
# saved tensors it saves (measured at N=64, C=10 and N=64, C=1000 on 2 cores).
_FUSED_FROM_NUMEL = 2**16


def logistic_terms(input: Tensor, target: Tensor) -> Tensor:
    """``y softplus(-x) + (1 - y) softplus(x)`` elementwise (BCE on logits), each term 0 where
    its coefficient is 0 even at an infinite logit (:func:`times`); ``input`` and ``target``
    of one shape and dtype.

    From ``2**16`` elements on, a custom backward: only the inputs are saved and the input's
    gradient is ``sigmoid(x) - y`` in one in-place pass, where autograd through the
    composition makes a dozen.
    """
    if input.numel() >= _FUSED_FROM_NUMEL:
        return _logistic_terms_function(input, target)
    return _logistic_terms_forward(input, target)
