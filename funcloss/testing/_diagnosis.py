"""What check_loss says when a property fails: the largest error, and what is likely wrong."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

# Inputs this small are shown with their values in a failure message.
_SHOW_VALUES = 8

_CONTROL_FLOW = (
    "fn has Python control flow on tensor values (`if`/`while` on a tensor, bool(), .item()), "
    "which breaks vmap and torch.compile: compute both branches and pick with torch.where, or "
    "use a mask"
)
# (a fragment of torch's error message, what it means for the author of fn)
_HINTS = (
    (
        "must override the setup_context staticmethod",
        "fn uses an old-style torch.autograd.Function (`forward(ctx, ...)`), which torch.func "
        "transforms cannot run: write the forward as a plain function of tensors and register "
        "the backward with @funcloss.custom_backward",
    ),
    (
        "does not have vmap support",
        "fn uses a torch.autograd.Function without a vmap rule: build it with "
        "@funcloss.custom_backward (it sets generate_vmap_rule=True)",
    ),
    ("data-dependent control flow", _CONTROL_FLOW),
    ("Data-dependent branching", _CONTROL_FLOW),
    ("calling .item()", _CONTROL_FLOW),
    (
        "hit the vmap fallback",
        "an op in fn has no batching rule, so vmap would fall back to a slow per-sample loop: "
        "rewrite it from ops that batch",
    ),
    (
        "Unsupported custom jvp",
        "fn's autograd.Function defines a jvp, which breaks torch.compile(fullgraph=True): use "
        "@funcloss.custom_backward, which leaves the jvp out while compiling",
    ),
)

BACKWARD_WRONG = (
    "fn's values match the reference but its derivative does not: its backward is wrong."
)
NOT_DIFFERENTIABLE = (
    "First derivatives match but second derivatives do not: fn's backward is not "
    "differentiable (it detaches, uses .data, .item(), NumPy or @once_differentiable, or reuses "
    "an intermediate saved in forward). Build the backward from differentiable torch ops on the "
    "inputs."
)
FORWARD_NOT_DIFFERENTIABLE = (
    "Under torch.compile inside a torch.func transform, torch autodiffs fn's forward instead of "
    "calling its custom backward: the forward itself must differentiate correctly."
)


class Failed(Exception):
    """A property does not hold; the message says where and by how much."""


class Skipped(Exception):
    """A property does not apply; the message says why."""


def describe(x: object) -> str:
    """``float64 (3, 2) [0.5, ...]``: dtype, shape, and the values of a small tensor."""
    if not isinstance(x, Tensor):
        return repr(x)
    shape = "(" + ", ".join(map(str, x.shape)) + ("," if x.dim() == 1 else "") + ")"
    text = f"{str(x.dtype).removeprefix('torch.')} {shape}"
    if x.numel() <= _SHOW_VALUES:
        values = x.detach().flatten().tolist()
        text += " [" + ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in values)
        text += "]"
    return text


def compare(what: str, actual: Any, expected: Tensor, rtol: float, atol: float) -> None:
    """Raise :class:`Failed` with the largest error unless ``actual`` matches ``expected``."""
    if not isinstance(actual, Tensor):
        raise Failed(f"{what}: expected a tensor, got {type(actual).__name__}")
    if actual.shape != expected.shape:
        raise Failed(
            f"{what}: shape {tuple(actual.shape)}, but the reference's is {tuple(expected.shape)}"
        )
    a, e = actual.detach().double(), expected.detach().double()
    same = (a == e) | (a.isnan() & e.isnan())
    error = torch.where(same, 0.0, (a - e).abs())
    bad = ~same & ~(error <= atol + rtol * e.abs())  # a NaN error counts as bad
    if not bool(bad.any()):
        return
    score = torch.where(bad, error.nan_to_num(float("inf")), -1.0)
    index = tuple(int(k) for k in torch.unravel_index(score.argmax(), a.shape))
    where = f" at index {index}" if index else ""
    message = (
        f"{what}: largest error {float(error[index]):.3g}{where}: got {float(a[index]):.6g}, "
        f"expected {float(e[index]):.6g} (rtol={rtol:g}, atol={atol:g})."
    )
    pattern = _pattern(a, e, rtol, atol)
    raise Failed(f"{message} {pattern}" if pattern else message)


def _pattern(a: Tensor, e: Tensor, rtol: float, atol: float) -> str:
    """Name a simple pattern in a mismatch: all zeros, or off by a constant factor."""
    if not (a.isfinite().all() and e.isfinite().all()) or not bool(e.abs().gt(atol).any()):
        return ""
    if not bool(a.abs().gt(atol).any()):
        return "fn's result is all zeros where the expected one is not."
    factor = float((a * e).sum() / (e * e).sum())
    if bool(((a - factor * e).abs() <= atol + rtol * (factor * e).abs()).all()):
        return f"fn's result is {factor:.6g} times the expected one: off by a constant factor."
    return ""


def raised(what: str, error: BaseException) -> Failed:
    """A failure for an exception raised by fn, with what it likely means."""
    first = (str(error).strip().splitlines() or [""])[0]
    message = f"{what} raised {type(error).__name__}: {first}"
    text = str(error)
    hint = next((hint for needle, hint in _HINTS if needle in text), "")
    return Failed(f"{message}\n    -> {hint}" if hint else message)


@contextmanager
def running(what: str) -> Iterator[None]:
    """Turn an exception raised by fn into a failure of the property being checked."""
    try:
        yield
    except (Failed, Skipped):
        raise
    except Exception as error:
        raise raised(what, error) from error


def reference_call(what: str, f: Callable[[], Any]) -> Any:
    """Run the reference; an exception there is a broken check, not a failing loss."""
    try:
        return f()
    except Exception as error:
        raise RuntimeError(
            f"check_loss: the reference raised while computing {what}: {error}"
        ) from error


def forward_mode_missing(error: BaseException) -> bool:
    """True for the errors of a function without forward-mode AD (no jvp)."""
    text = str(error)
    return isinstance(error, NotImplementedError) and any(
        words in text for words in ("forward AD", "forward-mode", "forward mode")
    )
