"""``check_loss``: verify a loss's values, derivatives and transforms against a reference."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from ._diagnosis import Failed, Skipped
from ._properties import Checker, Problem

__all__ = ["CheckReport", "check_loss"]

# In the order they are checked; each is a method of Checker.
PROPERTIES: tuple[str, ...] = (
    "value",
    "jacrev",
    "gradcheck",
    "jacfwd",
    "hessian",
    "gradgradcheck",
    "vmap",
    "compile",
    "compile_grad",
    "compile_vmap_grad",
    "module",
)


@dataclass(frozen=True)
class CheckReport:
    """What :func:`check_loss` verified.

    Attributes:
        fn: the name of the loss checked.
        checked: property -> what was compared, for each property that holds.
        skipped: property -> why it was not checked.
    """

    fn: str
    checked: Mapping[str, str]
    skipped: Mapping[str, str]

    def __str__(self) -> str:
        lines = [f"check_loss({self.fn}): {len(self.checked)} properties hold"]
        width = max(map(len, PROPERTIES)) + 1
        lines += [f"  {name:<{width}}{what}" for name, what in self.checked.items()]
        lines += [f"  {name:<{width}}skipped: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


def check_loss(
    fn: Callable[..., Tensor],
    reference: Callable[..., Tensor] | None,
    *inputs: Any,
    kwargs: Mapping[str, Any] | None = None,
    wrt: Sequence[int] | None = None,
    module: type[nn.Module] | nn.Module | None = None,
    skip: Iterable[str] = (),
    in_dims: Sequence[int | None] | None = None,
    reference_second_order: bool = True,
    rtol: float | None = None,
    atol: float | None = None,
    compile_backend: str = "aot_eager",
) -> CheckReport:
    r"""Check a loss's values, derivatives and torch.func transforms against a reference.

    Use it in a test, on inputs drawn with this package's strategies, for any loss, especially
    one with a hand-written backward (:func:`funcloss.custom_backward`). The reference is an
    independent implementation with ``fn``'s signature (torch's own loss, or a naive float64
    formula); it is run in plain eager mode and differentiated by plain autograd only, so it
    need not support any transform. The properties, in order (each can be switched off by name
    with ``skip``):

    - ``value``: ``fn(*inputs, **kwargs)`` against ``reference(*inputs, **kwargs)`` (and dtype).
    - ``jacrev``: ``torch.func.jacrev(fn)`` against the reference's Jacobian by
      ``torch.autograd.functional.jacobian``, for each input in ``wrt``.
    - ``gradcheck``: ``torch.autograd.gradcheck`` (finite differences) in float64.
    - ``jacfwd``: ``torch.func.jacfwd(fn)`` against the reference's Jacobian (so against
      ``jacrev``), or against ``jacrev(fn)`` without a reference. Skipped, and said so in the
      report, when ``fn`` has no forward mode (e.g. a custom backward without a jvp).
    - ``hessian``: ``jacrev(jacrev(fn))`` and (with forward mode) ``torch.func.hessian(fn)`` of
      ``fn(...).sum()`` against the reference's Hessian by double backward. Without one
      (``reference_second_order=False``, or its double backward raises) ours are compared
      with each other, and ``gradgradcheck`` is the independent check.
    - ``gradgradcheck``: ``torch.autograd.gradgradcheck`` in float64 (fast mode: random
      projections of the second derivative, with a fixed seed; the caller's RNG is untouched).
    - ``vmap``: ``vmap(fn)`` and ``vmap(grad(fn))`` against a loop, with torch's slow
      per-sample fallback turned into an error. By default the batch is two problems stacked
      along a new dimension 0: the inputs, and every tensor input flipped along its last
      dimension; pass ``in_dims`` to vmap over the inputs' own batch dimension instead.
    - ``compile``: ``torch.compile(fn, fullgraph=True)`` forward and backward against eager.
    - ``compile_grad``: ``torch.compile(grad(fn), fullgraph=True)`` against the reference's
      gradient (or eager ``grad(fn)``). Inside ``torch.compile`` under a transform torch
      autodiffs the forward and drops custom rules, so this checks that the forward itself
      differentiates correctly.
    - ``compile_vmap_grad``: ``torch.compile(vmap(grad(fn)), fullgraph=True)`` (per-sample
      gradients, as DP-SGD takes them) over the ``vmap`` property's batch, w.r.t. the first
      input in ``wrt``, against the reference's gradient of each problem (or eager
      ``grad(fn)``). Custom rules are dropped there too: the forward is differentiated.
    - ``module``: ``module(**kwargs)(*inputs)`` (or the given instance) against ``fn``.

    All properties run, and the failures are reported together. The compile properties call
    :func:`torch.compiler.reset` first, and take a second or two each: in a Hypothesis test,
    consider running them on one example only.

    Args:
        fn: the loss under test, ``fn(*inputs, **kwargs) -> Tensor``.
        reference: an independent implementation with the same signature, or ``None`` (then
            ``value`` is skipped and derivatives are checked by finite differences only).
        *inputs: the positional arguments; tensors or anything else (passed as is).
        kwargs: keyword arguments for both (and the module's constructor arguments).
        wrt: positions of the floating-point tensor inputs to differentiate; by default every
            floating-point tensor input. (Leave out those the reference cannot differentiate.)
        module: ``fn``'s module class (built with ``kwargs``) or an instance.
        skip: names of properties not to check (the names above).
        in_dims: ``vmap`` dimensions of ``inputs`` (one per input, ``None`` for unbatched).
        reference_second_order: ``False`` when the reference's double backward is missing or
            wrong (torch's CTC and margin kernels).
        rtol, atol: tolerances; by default ``torch.testing.assert_close``'s for the dtype of
            the first floating-point input.
        compile_backend: the ``torch.compile`` backend (``"aot_eager"`` is fast; ``"inductor"``
            generates code).

    Returns:
        A :class:`CheckReport`: the properties that hold and what each compared, and those
        skipped and why. ``str(report)`` is a short summary.

    Raises:
        AssertionError: when any property fails; the message names each failed property, the
            input (position and name) and the largest error (where and how large), and what
            is likely wrong: a backward off by a constant factor, a backward that detaches, Python
            control flow on tensor values, an old-style ``forward(ctx, ...)`` Function.
        ValueError: an unknown name in ``skip``, a bad ``wrt`` or ``in_dims``.
        RuntimeError: the reference itself raised.

    Examples:
        >>> report = funcloss.testing.check_loss(
        ...     funcloss.binary_cross_entropy, torch.nn.functional.binary_cross_entropy,
        ...     torch.tensor([0.2, 0.7], dtype=torch.float64),
        ...     torch.tensor([0.1, 0.9], dtype=torch.float64),
        ...     skip=["compile", "compile_grad", "compile_vmap_grad"])
        >>> sorted(report.checked)
        ['gradcheck', 'gradgradcheck', 'hessian', 'jacfwd', 'jacrev', 'value', 'vmap']
    """
    skip = set(skip)
    unknown = skip - set(PROPERTIES)
    if unknown:
        raise ValueError(
            f"check_loss: `skip` must name properties among {', '.join(PROPERTIES)}, "
            f"got {', '.join(sorted(unknown))}."
        )
    problem = Problem(fn, inputs, kwargs or {}, wrt, rtol, atol)
    checker = Checker(problem, reference, module, in_dims, reference_second_order, compile_backend)
    checked: dict[str, str] = {}
    skipped: dict[str, str] = {}
    failures: list[tuple[str, str]] = []
    for name in PROPERTIES:
        if name in skip:
            skipped[name] = "switched off"
            continue
        try:
            checked[name] = getattr(checker, name)()
            checker.held.add(name)
        except Skipped as reason:
            skipped[name] = str(reason)
        except Failed as failure:
            failures.append((name, str(failure)))
    if failures:
        names = ", ".join(name for name, _ in failures)
        lines = [
            f"check_loss({problem.name}): {len(failures)} of {len(failures) + len(checked)} "
            f"properties failed: {names}",
            f"  inputs: {problem.describe()}",
        ]
        lines += [f"  [{name}] {message}" for name, message in failures]
        raise AssertionError("\n".join(lines))
    return CheckReport(problem.name, checked, skipped)
