"""``check_loss``: verify a loss's values, derivatives and transforms against a reference."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optree
from torch import Tensor, nn

from ._diagnosis import Failed, Skipped, describe
from ._properties import Checker, Problem, _is_float_tensor, _parameter_names

__all__ = ["CheckReport", "check_loss"]

_TORCH_JIT_DEPRECATION = r"`torch\.jit\.script(_method)?` is deprecated"

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

    Inputs may be pytrees (optree: dicts, lists, tuples, ``None``...), as for
    :func:`funcloss.tree_loss`: an input holding tensors is checked leaf by leaf (each floating
    tensor leaf differentiated, batched, and named by its path, ``predictions['box']``), and
    ``fn``, ``reference`` and ``module`` get the trees back; an ``in_dims`` entry may be a
    prefix tree of its input, as for ``vmap``.

    All properties run, and the failures are reported together. The compile properties call
    :func:`torch.compiler.reset` first, and take a second or two each: in a Hypothesis test,
    consider running them on one example only.

    Args:
        fn: the loss under test, ``fn(*inputs, **kwargs) -> Tensor``.
        reference: an independent implementation with the same signature, or ``None`` (then
            ``value`` is skipped and derivatives are checked by finite differences only).
        *inputs: the positional arguments; tensors or anything else (passed as is).
        kwargs: keyword arguments for both (and the module's constructor arguments).
        wrt: positions of the inputs to differentiate (every floating-point tensor leaf of a
            pytree input); by default every floating-point tensor input and leaf. (Leave out
            those the reference cannot differentiate.)
        module: ``fn``'s module class (built with ``kwargs``) or an instance.
        skip: names of properties not to check (the names above).
        in_dims: ``vmap`` dimensions of ``inputs`` (one per input, ``None`` for unbatched).
        reference_second_order: ``False`` when the reference's double backward is missing or
            wrong (torch's CTC and margin kernels).
        rtol, atol: tolerances; by default ``torch.testing.assert_close``'s for the dtype of
            the first floating-point input.
        compile_backend: the ``torch.compile`` backend of the compile properties
            (``"aot_eager"``, the default, is fast; ``"inductor"`` generates code, as
            ``torch.compile``'s own default; ``"eager"`` only traces). The report names it.

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
    flat = _flatten_inputs(fn, reference, inputs, wrt, in_dims)
    problem = Problem(
        flat.fn, flat.inputs, kwargs or {}, flat.wrt, rtol, atol, flat.names, flat.restore
    )
    checker = Checker(
        problem, flat.reference, module, flat.in_dims, reference_second_order, compile_backend
    )
    checked: dict[str, str] = {}
    skipped: dict[str, str] = {}
    failures: list[tuple[str, str]] = []
    for name in PROPERTIES:
        if name in skip:
            skipped[name] = "switched off"
            continue
        try:
            with warnings.catch_warnings():
                # torch's own deprecation of torch.jit.script, raised inside torch (forward-mode
                # AD, compile) on first use: not the loss's failure, also under `-W error`.
                warnings.filterwarnings("ignore", _TORCH_JIT_DEPRECATION, DeprecationWarning)
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


@dataclass(frozen=True)
class _Flat:
    """A problem whose pytree inputs are replaced by their leaves, one input per leaf."""

    fn: Callable[..., Tensor]
    reference: Callable[..., Tensor] | None
    inputs: tuple[Any, ...]
    wrt: Sequence[int] | None
    in_dims: Sequence[Any] | None
    names: Sequence[str] | None
    restore: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None


def _holds_tensor(x: Any) -> bool:
    return any(isinstance(leaf, Tensor) for leaf in optree.tree_leaves(x, none_is_leaf=True))


def _flatten_inputs(
    fn: Callable[..., Tensor],
    reference: Callable[..., Tensor] | None,
    inputs: tuple[Any, ...],
    wrt: Sequence[int] | None,
    in_dims: Sequence[Any] | None,
) -> _Flat:
    """Replace each pytree input holding tensors (a dict of predictions, a list of outputs) by
    its leaves (optree, ``None`` a leaf), so that every property differentiates, batches and
    compares leaf by leaf; ``fn`` and ``reference`` get the trees back."""
    specs = [
        optree.tree_structure(x, none_is_leaf=True)
        if not isinstance(x, Tensor) and _holds_tensor(x)
        else None
        for x in inputs
    ]
    if all(spec is None or spec.is_leaf() for spec in specs):
        return _Flat(fn, reference, inputs, wrt, in_dims, None, None)
    if in_dims is not None and len(in_dims) != len(inputs):
        raise ValueError(
            f"check_loss: `in_dims` must have one entry per input ({len(inputs)}), "
            f"got {len(in_dims)}."
        )
    names = _parameter_names(fn, len(inputs))
    leaves: list[Any] = []
    labels: list[str] = []
    owner: list[int] = []
    dims: list[Any] = []
    for i, (x, spec) in enumerate(zip(inputs, specs, strict=True)):
        if spec is None:
            leaves.append(x)
            labels.append(names[i])
            owner.append(i)
            dims.append(None if in_dims is None else in_dims[i])
            continue
        accessors, xs, _ = optree.tree_flatten_with_accessor(x, none_is_leaf=True)
        leaves += xs
        labels += [a.codify(names[i]) for a in accessors]
        owner += [i] * len(xs)
        if in_dims is not None:
            dims += optree.broadcast_prefix(in_dims[i], x, none_is_leaf=True)

    def restore(flat: tuple[Any, ...]) -> tuple[Any, ...]:
        out, k = [], 0
        for x, spec in zip(inputs, specs, strict=True):
            n = 1 if spec is None else spec.num_leaves
            part = flat[k : k + n]
            if spec is None:
                out.append(part[0])
            else:
                # The treespec is taken again here, not captured: under torch.compile, Dynamo
                # (torch 2.13) cannot use an optree treespec made outside the graph.
                structure = optree.tree_structure(x, none_is_leaf=True)
                out.append(optree.tree_unflatten(structure, part))
            k += n
        return tuple(out)

    def lift(f: Callable[..., Tensor]) -> Callable[..., Tensor]:
        def on_leaves(*flat: Any, **kwargs: Any) -> Tensor:
            return f(*restore(flat), **kwargs)

        on_leaves.__name__ = getattr(f, "__name__", type(f).__name__)
        return on_leaves

    if wrt is not None:
        for i in wrt:
            if not 0 <= i < len(inputs) or not any(
                _is_float_tensor(x) for x, j in zip(leaves, owner, strict=True) if j == i
            ):
                got = describe(inputs[i]) if 0 <= i < len(inputs) else "no such input"
                raise ValueError(
                    "check_loss: `wrt` must hold positions of inputs with floating-point "
                    f"tensors, got {i} ({got})."
                )
        wrt = [k for k, j in enumerate(owner) if j in wrt and _is_float_tensor(leaves[k])]
    return _Flat(
        lift(fn),
        None if reference is None else lift(reference),
        tuple(leaves),
        wrt,
        None if in_dims is None else dims,
        labels,
        restore,
    )
