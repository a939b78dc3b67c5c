"""Argument checks and the one error-message template.

Every public loss validates its arguments here, so that bad input fails with
``"<fn>: `<arg>` must <rule>, got <actual>."`` instead of a C++ trace, a silent broadcast or NaN.

Checks on metadata (shape, dtype, config) always run. Checks on tensor *values* read the data
back to Python, which a torch.func transform, a compiled graph, a meta tensor or a FakeTensor
cannot do, and which costs a device synchronisation off the CPU; :func:`value_checks_enabled`
decides where they run (plain eager mode, real CPU tensors, and :func:`set_value_checks` not
switched off), and each check costs at most one read on valid input.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from numbers import Real
from typing import Any, Literal, NoReturn, TypeVar

import torch
from torch import Tensor

Reduction = Literal["none", "mean", "sum"]
REDUCTIONS: tuple[str, ...] = ("none", "mean", "sum")
F = TypeVar("F", bound=Callable[..., Any])


# torch's functorch bindings, which torch's type stubs do not declare.
_functorch: Any = torch._C._functorch  # pyright: ignore[reportAttributeAccessIssue]


def fail(
    kind: type[Exception], fn: str, arg: str, rule: str, got: object, hint: str = ""
) -> NoReturn:
    """Raise ``kind`` with the house template; ``hint`` is the usual fix, if there is one."""
    message = f"{fn}: `{arg}` must {rule}, got {got}."
    raise kind(f"{message} {hint}" if hint else message)


def shape_str(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


_value_checks = True  # the process-wide switch, see set_value_checks


def value_reads_allowed() -> bool:
    """The process-wide switch of :class:`set_value_checks`, for an eager path that already
    knows it runs in plain eager mode on CPU tensors and wants one scalar read."""
    return _value_checks


class set_value_checks:
    r"""Switch funcloss's eager value checks on or off, process-wide; also a context manager.

    Value checks read tensor values back to Python (a class index in range, probabilities in
    [0, 1], lengths that fit): clear errors in place of wrong results, at the price of a host
    read per call (at most one on valid input). Switch them off in a tuned training loop once
    the data pipeline is trusted; shape, dtype and config checks always stay on.

    They never run where a read is impossible or costly, whatever this switch says: under a
    torch.func transform, while ``torch.compile`` traces, on meta tensors and FakeTensors
    (``torch.export``, shape propagation), and on devices other than the CPU, where a read
    would synchronise the device (as with torch's losses, an out-of-range class index still
    fails there, in the indexing kernel's device-side assert, without funcloss's message).

    Args:
        enabled: ``True`` (the default state) to run the checks, ``False`` to skip them.

    Examples:
        >>> funcloss.set_value_checks(False)  # from here on, no value reads
        <funcloss.set_value_checks enabled=False>
        >>> funcloss.set_value_checks(True)
        <funcloss.set_value_checks enabled=True>
        >>> with funcloss.set_value_checks(False):  # only inside the block: no value read
        ...     funcloss.nll_loss(torch.zeros(2, 3), torch.tensor([0, 2]))
        tensor(0.)
    """

    def __init__(self, enabled: bool) -> None:
        global _value_checks
        if not isinstance(enabled, bool):
            fail(TypeError, "set_value_checks", "enabled", "be a bool", type(enabled).__name__)
        self.enabled = enabled
        self._previous = _value_checks
        _value_checks = enabled

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        global _value_checks
        _value_checks = self._previous

    def __repr__(self) -> str:
        return f"<funcloss.set_value_checks enabled={self.enabled}>"


_FAKE = torch._C._TorchDispatchModeKey.FAKE


def _holds_data(t: Tensor) -> bool:
    """Real data: not a meta tensor, not a FakeTensor (or a wrapper of one)."""
    if t.is_meta:
        return False
    return type(t) is Tensor or not torch._subclasses.fake_tensor.is_fake(t)  # pyright: ignore[reportAttributeAccessIssue]


def plain_eager(*tensors: Tensor) -> bool:
    """Not compiling, inside no torch.func transform and no FakeTensorMode, and every given
    tensor holds real data: where eager-only code paths (in-place buffers) may run."""
    if torch.compiler.is_compiling() or _functorch.peek_interpreter_stack() is not None:
        return False
    if torch._C._get_dispatch_mode(_FAKE) is not None:
        return False
    return all(_holds_data(t) for t in tensors)


def eager_mode(*tensors: Tensor) -> bool:
    """The mode conditions of the plain-eager fast paths: no torch.func transform, not
    compiling, no FakeTensorMode, no forward-AD dual level (its tangents need the transform-safe
    jvp), and none of ``tensors`` batched by ``torch.autograd.functional``'s legacy vmap.

    The tensors' own conditions stay with each caller: ``type(t) is Tensor`` (which excludes
    FakeTensors and other subclasses, cheaper than :func:`plain_eager`'s test), CPU, dtype."""
    if (
        torch.compiler.is_compiling()  # first: Dynamo folds it (the rest it cannot trace)
        or _functorch.peek_interpreter_stack() is not None
        or torch.autograd.forward_ad._current_level >= 0
        or torch._C._get_dispatch_mode(_FAKE) is not None
    ):
        return False
    for t in tensors:
        if _functorch.is_legacy_batchedtensor(t):
            return False
    return True


def eager_pair(input: object, target: object, dtypes: tuple[torch.dtype, ...]) -> bool:
    """The tensor conditions of an elementwise eager step, with :func:`eager_mode`'s: plain CPU
    tensors of one shape (at least one element) and one dtype among ``dtypes``, the target
    taking no gradient. The caller tests its own config (mask, weight, reduction) first."""
    return (
        type(input) is Tensor
        and type(target) is Tensor
        and input.dtype in dtypes  # type: ignore[attr-defined]
        and input.dtype == target.dtype  # type: ignore[attr-defined]
        and input.shape == target.shape  # type: ignore[attr-defined]
        and input.is_cpu  # type: ignore[attr-defined]
        and target.is_cpu  # type: ignore[attr-defined]
        and not target.requires_grad  # type: ignore[attr-defined]
        and input.numel() > 0  # type: ignore[attr-defined]
        and eager_mode(input)  # type: ignore[arg-type]
    )


def fused_training_step(reduction: str, *tensors: Tensor | None) -> bool:
    """A training step in plain eager mode: a scalar loss whose gradients will be needed, so a
    fused Function may compute them in its forward (``None`` entries are absent tensors)."""
    return (
        reduction != "none"
        and torch.is_grad_enabled()
        and any(t is not None and t.requires_grad for t in tensors)
        and plain_eager(*(t for t in tensors if t is not None))
        # Forward-mode AD (a dual level is open) needs the transform-safe path's jvp.
        and torch.autograd.forward_ad._current_level < 0
    )


def value_checks_enabled(*tensors: Tensor) -> bool:
    """Whether value checks on ``tensors`` may read them: :func:`plain_eager`, every tensor on
    the CPU, and the :func:`set_value_checks` switch on. Pass the tensors to be read (so that
    meta tensors are recognised); without tensors only the mode and the switch decide."""
    # plain_eager(*tensors) and every tensor on the CPU, written out: this runs on every call of
    # a loss with class indices, where it is a measurable part of a small call (a meta tensor
    # is not on the CPU; a FakeTensor may say it is)
    if not _value_checks or not plain_eager():
        return False
    for t in tensors:
        if not t.is_cpu or not (type(t) is Tensor or _holds_data(t)):
            return False
    return True


def in_place_safe(*tensors: Tensor) -> bool:
    """Plain eager mode with grad off (a Function's forward, or a backward that builds no graph),
    and no tensor batched by ``torch.autograd.functional``'s ``vectorize=True``: in-place updates
    of fresh buffers are safe there."""
    return (
        not torch.is_grad_enabled()
        and plain_eager(*tensors)
        and not any(_functorch.is_legacy_batchedtensor(t) for t in tensors)
    )


def check_tensor(fn: str, **tensors: object) -> None:
    for name, value in tensors.items():
        if not isinstance(value, Tensor):
            fail(TypeError, fn, name, "be a torch.Tensor", type(value).__name__)


def check_floating(fn: str, **tensors: Tensor | None) -> None:
    """Each given tensor (``None`` is skipped) must have a floating-point dtype."""
    for name, value in tensors.items():
        if value is None:
            continue
        check_tensor(fn, **{name: value})
        if not value.is_floating_point():
            fail(TypeError, fn, name, "have a floating-point dtype", value.dtype)


_INTEGER_DTYPES = frozenset(
    {torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16, torch.uint32}
)


def check_integer(fn: str, **tensors: Tensor) -> None:
    """Each given tensor must hold integers (class indices, lengths)."""
    for name, value in tensors.items():
        if not isinstance(value, Tensor):
            fail(TypeError, fn, name, "be a torch.Tensor", type(value).__name__)
        if value.dtype not in _INTEGER_DTYPES:
            fail(TypeError, fn, name, "have an integer dtype", value.dtype)


def as_index(target: Tensor) -> Tensor:
    """Integer class indices in a dtype that torch's ``gather``/``scatter`` take (int64, int32);
    narrower and unsigned dtypes are widened to int64, so ``-1`` and ``ignore_index`` compare
    as numbers rather than wrapping around."""
    return target if target.dtype in (torch.int64, torch.int32) else target.long()


def check_same_shape(fn: str, **tensors: Tensor) -> None:
    """All given tensors must have exactly the same shape (no broadcasting)."""
    (first, reference), *rest = tensors.items()
    for name, value in rest:
        if value.shape != reference.shape:
            fail(
                ValueError,
                fn,
                name,
                f"have the same shape as `{first}` {shape_str(reference.shape)}",
                shape_str(value.shape),
            )


def check_broadcastable_to(fn: str, name: str, value: Tensor | None, shape: torch.Size) -> None:
    """``value`` (if given) must broadcast to ``shape`` without changing ``shape``."""
    if value is None:
        return
    if broadcast_pair(value.shape, shape) != shape:
        fail(
            ValueError, fn, name, f"be broadcastable to {shape_str(shape)}", shape_str(value.shape)
        )


def check_where(fn: str, where: object, shape: Sequence[int]) -> None:
    """``where`` (if given) is a bool tensor that broadcasts to ``shape``, the loss's unreduced
    shape, without enlarging it."""
    if where is None:
        return
    if not isinstance(where, Tensor):
        fail(TypeError, fn, "where", "be a bool tensor or None", type(where).__name__)
    if where.dtype != torch.bool:
        fail(
            TypeError,
            fn,
            "where",
            "be a bool tensor (True marks the elements that count)",
            where.dtype,
            "Use `mask.bool()` or `mask > 0`.",
        )
    shape = torch.Size(shape)
    if broadcast_pair(where.shape, shape) != shape:
        fail(
            ValueError,
            fn,
            "where",
            f"be broadcastable to the unreduced loss shape {shape_str(shape)}",
            shape_str(where.shape),
        )


def checks_config(check: Callable[..., None]) -> Callable[[F], F]:
    """Attach a loss's config check, so that its module validates config at construction.

    ``check`` takes (by keyword) some of the loss's non-tensor config arguments and raises the
    house error for a bad value; the loss calls it too, so the rule is written once. The
    generated module (:func:`funcloss.loss_module`) calls it with its config in ``__init__``.
    """

    def attach(fn: F) -> F:
        fn.check_config = check  # type: ignore[attr-defined]
        return fn

    return attach


def check_reduction(fn: str, reduction: str, allowed: Sequence[str] = REDUCTIONS) -> None:
    if reduction not in allowed:
        options = " | ".join(repr(r) for r in allowed)
        fail(ValueError, fn, "reduction", f"be one of {options}", repr(reduction))


def _check_is_number(fn: str, name: str, value: object) -> None:
    # The concrete types first: the abstract Real check is slow, and this runs on every call.
    if not (isinstance(value, int | float) or isinstance(value, Real)):
        fail(TypeError, fn, name, "be a real number", type(value).__name__)


def check_number(fn: str, **values: float) -> None:
    """Each given config value must be a real Python number (an int or a float, not a tensor),
    and not NaN."""
    for name, value in values.items():
        _check_is_number(fn, name, value)
        if value != value:
            fail(ValueError, fn, name, "be a real number, not NaN", value)


def check_index(fn: str, **values: int) -> None:
    """Each given config value must be a Python int (a class index), not a bool or a float."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool):
            fail(TypeError, fn, name, "be an int", type(value).__name__)


def check_positive(fn: str, **values: float) -> None:
    for name, value in values.items():
        _check_is_number(fn, name, value)
        if not value > 0:
            fail(ValueError, fn, name, "be positive", value)


def check_non_negative(fn: str, **values: float) -> None:
    for name, value in values.items():
        _check_is_number(fn, name, value)
        if not value >= 0:
            fail(ValueError, fn, name, "be non-negative", value)


def check_in_range(fn: str, name: str, value: float, low: float, high: float) -> None:
    """``low <= value <= high`` for a float config value (NaN fails too)."""
    _check_is_number(fn, name, value)
    if not low <= value <= high:
        fail(ValueError, fn, name, f"be in [{low}, {high}]", value)


def check_class_indices(
    fn: str, target: Tensor, num_classes: int, ignore_index: int | None = None, name: str = "target"
) -> bool | None:
    """Eager-only: every class index lies in ``[0, num_classes)`` or equals ``ignore_index``.

    Returns whether some entry equals ``ignore_index`` (so callers can skip masking when none
    does), or ``None`` where values are not read (see :func:`value_checks_enabled`). One host
    read on valid input.
    """
    if not value_checks_enabled(target):
        return None
    if target.numel() == 0:
        return False
    if ignore_index is None:
        low_value, high_value = torch.stack(torch.aminmax(target)).tolist()
        if 0 <= low_value and high_value < num_classes:
            return False
    else:
        # The smallest and largest index that is not ignore_index, and whether one is: one read.
        ignored = target == ignore_index
        kept = target.masked_fill(ignored, 0)
        kept_low, kept_high = torch.aminmax(kept)
        stats = torch.stack([kept_low, kept_high, ignored.any().to(kept.dtype)]).tolist()
        low_value, high_value, any_ignored = stats
        if 0 <= low_value and high_value < num_classes:
            return bool(any_ignored)
    bad = (target < 0) | (target >= num_classes)
    if ignore_index is not None:
        bad &= target != ignore_index
    first = int(target[bad].flatten()[0])
    extra = f" or equal ignore_index={ignore_index}" if ignore_index is not None else ""
    raise IndexError(f"{fn}: `{name}` values must be in [0, {num_classes}){extra}, got {first}.")


def check_values_in(
    fn: str, name: str, value: Tensor, low: float, high: float, **more: Tensor
) -> None:
    """Eager-only: every element of ``value`` (and of each tensor in ``more``, named by its
    keyword) lies in ``[low, high]`` (NaN fails too): one host read for all of them."""
    if not value_checks_enabled(value, *more.values()):
        return
    values = {name: value, **more}
    # aminmax propagates NaN; one stack (it promotes mixed dtypes) and one read, exact: a
    # Python float holds every floating value
    extremes = [bound for v in values.values() if v.numel() for bound in torch.aminmax(v)]
    if not extremes or all(low <= v <= high for v in torch.stack(extremes).tolist()):
        return
    for arg, tensor in values.items():
        bad = ~((tensor >= low) & (tensor <= high))
        if bool(bad.any()):
            first = float(tensor.detach()[bad].flatten()[0])
            raise ValueError(f"{fn}: `{arg}` values must be in [{low}, {high}], got {first}.")


def check_class_weight_shape(fn: str, weight: Tensor | None, num_classes: int) -> None:
    """torch's rule for a class weight: floating, one-dimensional, one weight per class."""
    if weight is None:
        return
    check_floating(fn, weight=weight)
    if weight.shape != (num_classes,):
        fail(
            ValueError,
            fn,
            "weight",
            f"have shape ({num_classes},), one per class",
            shape_str(weight.shape),
        )


def check_class_weight(fn: str, weight: Tensor | None, input: Tensor) -> None:
    """A class weight of ``input``'s dtype, shape ``(C,)`` for ``input`` ``(C,)`` or
    ``(N, C, ...)``."""
    if weight is None:
        return
    check_class_weight_shape(fn, weight, input.shape[0] if input.dim() == 1 else input.shape[1])
    if weight.dtype != input.dtype:
        fail(TypeError, fn, "weight", f"have the input's dtype {input.dtype}", weight.dtype)


def check_label_dtype(fn: str, **tensors: Tensor) -> None:
    """Label tensors (``±1`` targets, multi-hot targets) may be floating or integer."""
    for name, value in tensors.items():
        check_tensor(fn, **{name: value})
        if value.dtype == torch.bool or value.is_complex():
            fail(TypeError, fn, name, "have a floating-point or integer dtype", value.dtype)


# -- broadcasting
#
# funcloss broadcasts exactly where torch 2.13 does (measured per loss: tests/test_broadcasting.py).
# These helpers give the house error where torch's broadcast fails, torch's warning where torch
# warns, and the promoted dtype of a loss's floating inputs.


def broadcast_pair(first: torch.Size, second: torch.Size) -> torch.Size | None:
    """torch's broadcasting rule on two shapes, ``None`` where they do not broadcast
    (``torch.broadcast_shapes`` costs ~30 us a call; this runs on every loss call)."""
    if first == second:
        return first
    ndim = max(len(first), len(second))
    padded_first = (1,) * (ndim - len(first)) + tuple(first)
    padded_second = (1,) * (ndim - len(second)) + tuple(second)
    out = []
    for a, b in zip(padded_first, padded_second, strict=True):
        if a == b or b == 1:
            out.append(a)
        elif a == 1:
            out.append(b)
        else:
            return None
    return torch.Size(out)


def broadcast_shape(fn: str, **tensors: Tensor | None) -> torch.Size:
    """The shape the given tensors (``None`` skipped) broadcast to, in argument order; the house
    error names the first tensor that does not broadcast with those before it."""
    shape: torch.Size | None = None
    names: list[str] = []
    for name, value in tensors.items():
        if value is None:
            continue
        if shape is None:
            shape = value.shape
        else:
            broadcast = broadcast_pair(shape, value.shape)
            if broadcast is None:
                others = " and ".join(f"`{n}`" for n in names)
                fail(
                    ValueError,
                    fn,
                    name,
                    f"be broadcastable with {others} (shape {shape_str(shape)})",
                    shape_str(value.shape),
                )
            shape = broadcast
        names.append(name)
    return torch.Size() if shape is None else shape


def check_same_ndim(fn: str, **tensors: Tensor) -> None:
    """All given tensors have the same number of dimensions (torch requires it before it
    broadcasts the pairwise and triplet losses)."""
    (first, reference), *rest = tensors.items()
    for name, value in rest:
        if value.dim() != reference.dim():
            fail(
                ValueError,
                fn,
                name,
                f"have as many dimensions as `{first}` ({reference.dim()}; sizes of 1 broadcast)",
                f"{value.dim()} (shape {shape_str(value.shape)})",
            )


def warn_target_size(input: Tensor, target: Tensor, stacklevel: int = 4) -> None:
    """torch's warning (same text, ``UserWarning``) when a regression target's shape differs
    from the input's and the two are broadcast. ``stacklevel`` points at the user's call
    (through the loss and its autocast wrapper).

    Not while compiling: a ``warnings.warn`` breaks a fullgraph compile."""
    if target.shape != input.shape and not torch.compiler.is_compiling():
        warnings.warn(
            f"Using a target size ({target.size()}) that is different to the input size "
            f"({input.size()}). This will likely lead to incorrect results due to broadcasting. "
            "Please ensure they have the same size.",
            stacklevel=stacklevel,
        )


def promoted_dtype(*tensors: Tensor | None) -> torch.dtype:
    """``torch.promote_types`` over the floating (or complex) tensors given (``None`` and
    integer tensors skipped): the dtype of every loss's output."""
    dtype: torch.dtype | None = None
    for value in tensors:
        if value is None or not (value.is_floating_point() or value.is_complex()):
            continue
        dtype = value.dtype if dtype is None else torch.promote_types(dtype, value.dtype)
    return torch.get_default_dtype() if dtype is None else dtype


def gathered_index_mask(
    target: Tensor, num_classes: int, ignore_index: int
) -> tuple[Tensor, Tensor | None]:
    """:func:`class_index_mask` with ``gathered=True``, for a caller that knows the value checks
    are enabled for ``target`` (non-empty): one reduction tells whether an entry may equal
    ``ignore_index`` (``min`` below the classes, ``max`` above them, no read for a class)."""
    if ignore_index < 0:
        maybe_ignored = int(target.min()) < 0  # the one host read
    elif ignore_index >= num_classes:
        maybe_ignored = int(target.max()) >= num_classes
    else:
        maybe_ignored = True
    if not maybe_ignored:
        return target, None
    ignored = target == ignore_index
    # times 0 where ignored: exact for integers, and 3x faster than masked_fill (int64, CPU)
    return target * ~ignored, ignored


def class_index_mask(
    fn: str,
    target: Tensor,
    num_classes: int,
    ignore_index: int,
    name: str = "target",
    gathered: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Class indices with ignored entries set to 0, and the mask of ignored entries (``None``
    when nothing is ignored, which is known only in eager mode).

    In eager mode it checks, as :func:`check_class_indices`, that every entry is in
    ``[0, num_classes)`` or equals ``ignore_index``, reading one value back to the host (on a
    GPU a read is a device synchronisation): the range of the entries. When ``ignore_index``
    is an end of that range (padding with -100), the entries between it and the classes are
    checked on the device (``torch._assert_async``: synchronous on the CPU, asynchronous on an
    accelerator).

    ``gathered``: the caller gathers (or scatters) at every returned index, and on the CPU
    ``gather``/``scatter`` raise a RuntimeError for an index outside ``[0, num_classes)``, which
    the caller turns into the clear IndexError with :func:`check_class_indices`. Then only
    whether an entry may equal ``ignore_index`` is read, from one reduction (``min`` below the
    classes, ``max`` above them, nothing for a class index): about half the cost of the range
    at small sizes, where it is a sizeable part of a call.
    """
    if not value_checks_enabled(target):
        ignored = target == ignore_index
        return target.masked_fill(ignored, 0), ignored
    if target.numel() == 0:
        return target, None
    if gathered:
        return gathered_index_mask(target, num_classes, ignore_index)
    low, high = torch.stack(torch.aminmax(target)).tolist()  # the one host read
    if 0 <= low and high < num_classes:
        if not low <= ignore_index <= high:
            return target, None
        ignored = target == ignore_index  # a class index that may be there
        return target.masked_fill(ignored, 0), ignored
    if not ((low >= 0 or low == ignore_index) and (high < num_classes or high == ignore_index)):
        check_class_indices(fn, target, num_classes, ignore_index, name)  # the IndexError
    ignored = target == ignore_index
    safe = target.masked_fill(ignored, 0)
    inside = safe.min() >= 0 if low == ignore_index else safe.max() < num_classes
    try:
        torch._assert_async(inside)  # pyright: ignore[reportPrivateImportUsage]
    except RuntimeError:
        check_class_indices(fn, target, num_classes, ignore_index, name)  # the IndexError
        raise
    return safe, ignored
