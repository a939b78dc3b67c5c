"""Execution modes: is a torch.func transform active; how a loss behaves under torch.autocast.

These are the only places that ask; the rest of funcloss calls them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal, TypeVar, cast

import torch
from torch import Tensor

F = TypeVar("F", bound=Callable[..., Any])


@torch.compiler.assume_constant_result
def under_transform() -> bool:
    """True inside a torch.func transform (``grad``, ``vmap``, ``jacrev``, ``jacfwd``, ...).

    Safe to call while torch.compile traces: Dynamo runs it once and folds the result into the
    graph. (Written inline, ``peek_interpreter_stack() is None`` is wrongly ``False`` under a
    plain ``torch.compile`` on torch 2.13: Dynamo wraps the ``None`` in an object variable.)
    """
    return torch._C._functorch.peek_interpreter_stack() is not None  # pyright: ignore[reportAttributeAccessIssue]


# -- torch.autocast ------------------------------------------------------------------------------
#
# Under torch.autocast, torch's losses follow autocast's float32 policy: the loss ops are on its
# fp32 list, so every floating tensor argument on the autocast device that is not float64 is cast
# to float32 and the op runs with autocast off (c10's ``cached_cast(at::kFloat, ...)`` and
# ``ExcludeDispatchKeyGuard``): the result is float32, computed in float32. The losses torch
# writes as Python compositions of other ops (gaussian_nll_loss, multilabel_soft_margin_loss,
# triplet_margin_with_distance_loss) are not on the list: their result has the inputs' promoted
# dtype (bfloat16 for bfloat16 inputs), computed op by op in low precision. Measured on torch
# 2.13 CPU; tests/test_autocast.py pins both against torch's own losses. The device type
# decides, as in torch: the autocast of the first tensor argument's device type applies.

AutocastPolicy = Literal["float32", "promoted"]
_any_autocast_enabled = torch._C._is_any_autocast_enabled


def follows_autocast(policy: AutocastPolicy) -> Callable[[F], F]:
    """Make a public loss follow torch's autocast behaviour for it (output dtype, accuracy).

    Under an enabled autocast for the device of the first tensor argument, floating tensor
    arguments other than float64 are cast to float32 and the loss runs with that autocast off.
    ``"float32"`` (a loss on autocast's fp32 op list: cross_entropy, mse_loss, ...) returns that
    float32 result; ``"promoted"`` (a loss torch writes as a composition of other ops) casts it
    to the promoted dtype of the floating tensor arguments as given, torch's output dtype there,
    after computing in float32 (at least as accurate as torch's op-by-op low precision).

    With no autocast enabled the wrapper costs one C call (``_is_any_autocast_enabled``) on top
    of the call itself. The policy is recorded as ``fn.__autocast__``.
    """
    if policy not in ("float32", "promoted"):
        rule = "`policy` must be 'float32' or 'promoted'"
        raise ValueError(f"follows_autocast: {rule}, got {policy!r}.")

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def loss(*args: Any, **kwargs: Any) -> Any:
            if not _any_autocast_enabled():
                return fn(*args, **kwargs)
            return _under_autocast(fn, policy, args, kwargs)

        loss.__autocast__ = policy  # type: ignore[attr-defined]
        return cast(F, loss)

    return decorate


def _under_autocast(
    fn: Callable[..., Any], policy: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    device_type = next((a.device.type for a in args if isinstance(a, Tensor)), None)
    if (
        device_type is None
        or not torch._C._is_autocast_available(device_type)
        or not torch.is_autocast_enabled(device_type)
    ):
        return fn(*args, **kwargs)
    given = [*args, *kwargs.values()]
    args = tuple(_float32(a, device_type) for a in args)
    kwargs = {name: _float32(value, device_type) for name, value in kwargs.items()}
    with torch.autocast(device_type, enabled=False):
        output = fn(*args, **kwargs)
    if policy == "float32":
        return output
    dtypes = [v.dtype for v in given if isinstance(v, Tensor) and v.is_floating_point()]
    return output.to(functools.reduce(torch.promote_types, dtypes or [output.dtype]))


def _float32(value: Any, device_type: str) -> Any:
    """autocast's fp32 cast: floating tensors on the autocast device, float64 left alone."""
    if (
        isinstance(value, Tensor)
        and value.is_floating_point()
        and value.dtype != torch.float64
        and value.device.type == device_type
    ):
        return value.float()
    return value
