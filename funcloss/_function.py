"""The custom-backward machinery: a plain forward function -> a transform-safe autograd.Function.

:func:`custom_backward` builds the ``torch.autograd.Function`` the way torch.func needs it
(docs/design.md §3), so neither funcloss's own losses nor users' ones touch ``ctx``:

- ``setup_context`` style; ``generate_vmap_rule = True`` (forward, backward and jvp are torch ops),
  or for a loss declared samplewise (``sample_dims``) a vmap rule that folds the vmapped samples
  into the loss's own, its backward a Function with such a rule too;
- every tensor is passed to ``apply`` positionally (tensor pytrees are flattened with optree);
  everything else is config, rebuilt around the tensors on the other side;
- only the inputs are saved, and the backward is a plain function of them, so double backward
  (``jacrev(jacrev)``, ``hessian``) differentiates through it exactly;
- two classes: the one with a ``jvp`` (forward mode: ``jacfwd``, ``hessian``, ``func.jvp``) is
  used only while not compiling, because a Function with a custom jvp breaks
  ``torch.compile(fullgraph=True)``;
- outside torch.func and compiling, the call goes to the C ``apply`` directly, with only the real
  tensors: what ``Function.apply`` does there, without its signature bind of the padded arity.

:class:`SlopeStep` is the other Function here, for plain eager calls only: the eager training
step that keeps the slope ``d loss / d input`` from its forward and scales it in place into the
gradient (each family supplies a :class:`SlopeRule`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Generic, NamedTuple, ParamSpec, cast

import optree
import torch
from torch import Tensor

from ._checks import shape_str
from ._modes import under_transform

P = ParamSpec("P")

_NO_DEFAULT = object()

# Every call passes exactly this many tensor slots to ``apply`` (unused ones are None). Dynamo,
# tracing a Function under a torch.func transform, decides whether to pass ``ctx`` by comparing
# the argument count with the number of forward parameters, so the arity must be fixed.
MAX_TENSORS = 32
_PADDING = (None,) * MAX_TENSORS
_FORWARD_SIGNATURE = inspect.Signature(
    [
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_ONLY)
        for name in ("layout", *(f"tensor{i}" for i in range(MAX_TENSORS)))
    ]
)


# The C ``apply`` under ``autograd.Function.apply``'s Python layer, and functorch's unwrap of a
# tensor escaped from a finished transform (that layer's one step outside a transform).
_C_APPLY: Any = torch._C._FunctionBase.__dict__["apply"]
_unwrap_if_dead = torch._C._functorch.unwrap_if_dead  # pyright: ignore[reportAttributeAccessIssue]
_transforms_active = torch._C._are_functorch_transforms_active


def _is_tensor(x: object) -> bool:
    return isinstance(x, Tensor)


def _check_function(name: str, what: str, fn: object) -> None:
    """``fn`` must be a plain callable, not a class (an ``autograd.Function`` in particular)."""
    if isinstance(fn, type) and issubclass(fn, torch.autograd.Function):
        raise TypeError(
            f"{name}: `{what}` must be a function, got the autograd.Function {fn.__name__}. "
            "Decorate its forward, written as a plain function without ctx, and register its "
            "backward with @<loss>.backward."
        )
    if not callable(fn) or isinstance(fn, type):
        got = f"the class {fn.__name__}" if isinstance(fn, type) else type(fn).__name__
        raise TypeError(f"{name}: `{what}` must be a function, got {got}.")


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {shape_str(value.shape)}"
    return type(value).__name__


class _Layout:
    """Where the tensors sit among a call's arguments, and how to put the call back together.

    ``leaves`` are the flattened arguments; ``tensor_slots[k]`` is the leaf index of the k-th
    tensor; ``treespec`` rebuilds the argument tuple from the leaves (``None`` when every
    argument is a leaf, the common case, which then needs no pytree work at all).
    """

    treespec: Any  # optree.PyTreeSpec | None

    def __init__(self, args: tuple[Any, ...]) -> None:
        leaves: list[Any]
        if any(isinstance(a, list | tuple | dict) for a in args):
            leaves, self.treespec = optree.tree_flatten(args, none_is_leaf=True)  # type: ignore[arg-type]
        else:
            leaves, self.treespec = list(args), None
        self.tensor_slots = tuple(i for i, leaf in enumerate(leaves) if _is_tensor(leaf))
        self.config = tuple(None if _is_tensor(leaf) else leaf for leaf in leaves)
        # The top-level arguments that hold a tensor, or are None (an optional tensor left
        # out): each gets a gradient slot in backward and a tangent in jvp.
        if self.treespec is None:
            self.tensor_args = tuple(i for i, a in enumerate(args) if a is None or _is_tensor(a))
        else:
            self.tensor_args = tuple(
                i
                for i, a in enumerate(args)
                if a is None or any(map(_is_tensor, optree.tree_leaves(a, none_is_leaf=True)))
            )

    def rebuild(self, tensors: Sequence[Tensor | None]) -> tuple[Any, ...]:
        """Put the call back together; ``tensors`` may carry trailing padding."""
        leaves = list(self.config)
        for slot, tensor in zip(self.tensor_slots, tensors, strict=False):
            leaves[slot] = tensor
        if self.treespec is None:
            return tuple(leaves)
        return cast(tuple[Any, ...], optree.tree_unflatten(self.treespec, leaves))


class CustomBackwardLoss(Generic[P]):
    """A loss with a hand-written backward (and optionally a jvp); see :func:`custom_backward`.

    Call it like the forward function. Register the derivative rules with the ``backward`` and
    ``jvp`` decorators.
    """

    def __init__(self, forward: Callable[P, Tensor]) -> None:
        _check_function("custom_backward", "forward", forward)
        functools.update_wrapper(self, forward)
        signature = inspect.signature(forward)
        self.__signature__ = signature
        self._name = getattr(forward, "__name__", type(forward).__name__)
        stars = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
        variadic = [
            stars[p.kind] + p.name for p in signature.parameters.values() if p.kind in stars
        ]
        if variadic:
            raise TypeError(
                f"custom_backward: `forward` must not take *args or **kwargs, got "
                f"`{variadic[0]}` in {self._name}. Name each argument; pass several tensors as "
                "one tuple or list."
            )
        self._forward = forward
        self._backward: Callable[..., Any] | None = None
        self._jvp: Callable[..., Tensor] | None = None
        self._sample_dims: tuple[int | None, ...] | None = None
        self._params = tuple(signature.parameters)
        self._index = {param: i for i, param in enumerate(self._params)}
        self._defaults = tuple(
            _NO_DEFAULT if p.default is inspect.Parameter.empty else p.default
            for p in signature.parameters.values()
        )
        # Keyword-only config (``def f(input, target, *, sigma=1.0)``, the house style) is
        # bound by name here and passed by keyword to the forward and the rules.
        keyword_only = inspect.Parameter.KEYWORD_ONLY
        self._keywords = tuple(
            p.name for p in signature.parameters.values() if p.kind is keyword_only
        )
        self._positional = len(self._params) - len(self._keywords)
        self._call_forward = _spread(forward, self._positional, self._keywords)
        self._build()

    def _build(self) -> None:
        spread = functools.partial(_spread, positional=self._positional, keywords=self._keywords)
        self._plain, self._forward_mode, self._transformed = _build_functions(
            self._name,
            self._params,
            self._call_forward,
            None if self._backward is None else spread(self._backward),
            None if self._jvp is None else spread(self._jvp),
            self._sample_dims,
        )
        self._eager_apply = _C_APPLY.__get__(None, self._forward_mode)

    def __repr__(self) -> str:
        return f"<custom_backward loss {self._name}>"

    def backward(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Register ``fn(grad, *inputs) -> gradients``: one per tensor argument (or ``None``).

        An argument that is ``None`` in the call (an optional tensor left out) counts as a
        tensor argument and takes a ``None`` gradient. A pytree argument gets a pytree of
        gradients of the same structure (or ``None``).
        """
        _check_function(self._name, "backward", fn)
        self._backward = fn
        self._build()
        return fn

    def jvp(self, fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        """Register ``fn(*tangents, *inputs) -> output tangent``, one tangent per tensor argument.

        A tangent is a zero tensor where the caller gave none, and ``None`` for an argument that
        is ``None`` in the call; for a pytree argument it is a pytree of the same structure.
        """
        _check_function(self._name, "jvp", fn)
        self._jvp = fn
        self._build()
        return fn

    def sample_dims(self, **dims: int) -> None:
        """Declare the loss samplewise: output element ``n`` (along the output's dimension 0)
        depends only on element ``n`` of each named tensor argument along its given dimension,
        and the backward returns each gradient with the same sample dimension.

        Under ``vmap`` the loss then runs once over the vmapped samples folded into its own
        sample dimension (``(B, ..., N, ...)`` becomes ``(..., B N, ...)``), forward and
        backward, instead of each of its ops batched in turn: the speed of a batched call for a
        loss that loops (``ctc_loss``'s frames). A call with a tensor argument not named here,
        or with a pytree argument, takes the generated vmap rule, as does a backward where only
        the incoming gradient is batched (``jacrev``: the rest of the backward runs once).
        """
        for name, dim in dims.items():
            if name not in self._index:
                raise TypeError(f"{self._name}: sample_dims got an unknown argument `{name}`.")
            if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
                raise TypeError(
                    f"{self._name}: sample_dims of `{name}` must be a dimension >= 0, got {dim!r}."
                )
        self._sample_dims = tuple(dims.get(param) for param in self._params)
        self._build()

    # -- calling -------------------------------------------------------------------------------

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        if len(args) > self._positional:
            by_keyword = f" (pass {', '.join(f'`{k}`' for k in self._keywords)} by keyword)"
            raise TypeError(
                f"{self._name}: takes {self._positional} positional arguments"
                f"{by_keyword if self._keywords else ''}, got {len(args)}."
            )
        values = list(args) + [_NO_DEFAULT] * (len(self._params) - len(args))
        for key, value in kwargs.items():
            if key not in self._index:
                raise TypeError(f"{self._name}: got an unexpected keyword argument `{key}`.")
            values[self._index[key]] = value
        for i, value in enumerate(values):
            if value is _NO_DEFAULT:
                values[i] = self._defaults[i]
                if values[i] is _NO_DEFAULT:
                    raise TypeError(f"{self._name}: missing argument `{self._params[i]}`.")
        return tuple(values)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Tensor:
        if self._backward is None:
            raise TypeError(
                f"{self._name}: no backward registered; add one with @{self._name}.backward."
            )
        values = self._bind(args, kwargs)
        layout = _Layout(values)
        leaves: Sequence[Any] = values
        if layout.treespec is not None:
            leaves = optree.tree_leaves(values, none_is_leaf=True)  # type: ignore[arg-type]
        tensors = tuple(leaf for leaf in leaves if _is_tensor(leaf))
        if len(tensors) > MAX_TENSORS:
            raise TypeError(
                f"{self._name}: takes at most {MAX_TENSORS} tensors in all, got {len(tensors)}."
            )
        if not torch.compiler.is_compiling():
            if not _transforms_active():
                # outside torch.func: what Function.apply does there, without its Python layer
                # (a signature bind of the padded arity, a generator over every argument):
                # half of a small call's overhead. Only the real tensors are passed (autograd
                # drops the backward's trailing None gradients).
                return self._eager_apply(layout, *map(_unwrap_if_dead, tensors))
            function = self._transformed
        elif under_transform():
            # torch.compile under a torch.func transform (compile(vmap(grad(f)))): Dynamo either
            # drops the custom rules and autodiffs the forward, or (for an input computed inside
            # the compiled region) wraps the Function in its own ApplyTemplate Function, which
            # has no vmap rule and fails under vmap. Trace the forward directly: the same
            # derivatives, by autodiff of a forward that is correct to differentiate.
            return _checked_output(self._name, self._call_forward(*values))
        else:
            function = self._plain
        return function.apply(layout, *tensors, *_PADDING[len(tensors) :])


def _spread(
    fn: Callable[..., Any], positional: int, keywords: tuple[str, ...]
) -> Callable[..., Any]:
    """``fn`` called with the forward's arguments as one flat tuple at the end (after the grad or
    the tangents): those past the first ``positional`` go by keyword, as the names in
    ``keywords``. ``fn`` itself when there are none, so the common case adds no call."""
    if not keywords:
        return fn
    count = positional + len(keywords)

    def call(*args: Any) -> Any:
        lead = len(args) - count
        keyword_values = args[lead + positional :]
        return fn(*args[: lead + positional], **dict(zip(keywords, keyword_values, strict=True)))

    return call


def _checked_output(name: str, output: object) -> Tensor:
    if not _is_tensor(output):
        raise TypeError(f"{name}: the forward must return one tensor, got {type(output).__name__}.")
    return cast(Tensor, output)


def _run_backward(
    name: str,
    params: tuple[str, ...],
    backward: Callable[..., Any] | None,
    layout: _Layout,
    grad: Tensor,
    tensors: Sequence[Tensor],
) -> tuple[Tensor | None, ...]:
    assert backward is not None
    args = layout.rebuild(tensors)
    grads = backward(grad, *args)
    if not isinstance(grads, tuple | list):
        grads = (grads,)
    positions = layout.tensor_args
    if len(grads) != len(positions):
        expected = ", ".join(f"argument {i} `{params[i]}`" for i in positions)
        raise TypeError(
            f"{name}: backward must return {len(positions)} gradients, one per tensor argument "
            f"({expected}; None where there is none), got {len(grads)}."
        )
    if layout.treespec is None and all(g is None or _is_tensor(g) for g in grads):
        # every argument a leaf (the common case): each tensor's gradient checked directly
        flat_grads: list[Any] = []
        for slot, tensor in zip(layout.tensor_slots, tensors, strict=True):
            g = grads[positions.index(slot)]
            if g is not None and g.shape != tensor.shape:
                _match(name, params[slot], g, tensor, slot)  # raises, naming the argument
            flat_grads.append(g if tensor.is_floating_point() or tensor.is_complex() else None)
        return tuple(flat_grads)
    full: list[Any] = [optree.tree_map(lambda _: None, a, none_is_leaf=True) for a in args]
    for position, g in zip(positions, grads, strict=True):
        full[position] = _match(name, params[position], g, args[position], position)
    flat: list[Any] = (
        optree.tree_leaves(tuple(full), none_is_leaf=True)  # type: ignore[arg-type]
        if layout.treespec
        else full
    )
    return tuple(
        flat[slot] if tensor.is_floating_point() or tensor.is_complex() else None
        for slot, tensor in zip(layout.tensor_slots, tensors, strict=True)
    )


def _match(name: str, param: str, value: Any, like: Any, position: int) -> Any:
    """Check a gradient (pytree) against its argument; expand ``None`` to per-leaf ``None``."""
    if value is None:
        return optree.tree_map(lambda _: None, like, none_is_leaf=True)
    like_leaves, like_spec = optree.tree_flatten(like, none_is_leaf=True)
    value_leaves = optree.tree_leaves(value, none_is_leaf=True)
    if len(like_leaves) != len(value_leaves):
        raise TypeError(
            f"{name}: backward gradient for argument {position} (`{param}`) must have the "
            f"structure of `{param}` ({len(like_leaves)} leaves), got {len(value_leaves)} leaves."
        )
    for a, g in zip(like_leaves, value_leaves, strict=True):
        if not _is_tensor(a) or g is None:
            continue
        where = f"{name}: backward gradient for argument {position} (`{param}`)"
        if not _is_tensor(g):
            raise TypeError(f"{where} must be a tensor or None, got {_describe(g)}.")
        if g.shape != a.shape:
            raise ValueError(
                f"{where} must have shape {shape_str(a.shape)}, got {shape_str(g.shape)}."
            )
    return optree.tree_unflatten(like_spec, value_leaves)


def _run_jvp(
    name: str,
    jvp: Callable[..., Tensor] | None,
    layout: _Layout,
    output_shape: torch.Size,
    tangents: Sequence[Tensor | None],
    tensors: Sequence[Tensor],
) -> Tensor:
    if jvp is None:
        raise NotImplementedError(
            f"{name}: forward-mode AD (jacfwd, hessian, torch.func.jvp) needs a jvp; "
            f"register one with @{name}.jvp."
        )
    tangents = [
        torch.zeros_like(t) if d is None else d for d, t in zip(tangents, tensors, strict=True)
    ]
    args = layout.rebuild(tensors)
    tangent_args = layout.rebuild(tangents)
    result = jvp(*(tangent_args[i] for i in layout.tensor_args), *args)
    if not _is_tensor(result):
        raise TypeError(
            f"{name}: jvp must return one tensor, the output's tangent of shape "
            f"{shape_str(output_shape)}, got {_describe(result)}."
        )
    if result.shape != output_shape:
        raise ValueError(
            f"{name}: jvp must return the output's tangent, of the output's shape "
            f"{shape_str(output_shape)}, got {shape_str(result.shape)}."
        )
    return result


def _build_functions(
    name: str,
    params: tuple[str, ...],
    forward_fn: Callable[..., Tensor],
    backward_fn: Callable[..., Any] | None,
    jvp_fn: Callable[..., Tensor] | None,
    sample_dims: tuple[int | None, ...] | None,
) -> tuple[
    type[torch.autograd.Function], type[torch.autograd.Function], type[torch.autograd.Function]
]:
    """The Functions of a loss: the plain one (compiling), the one with forward mode, and the
    one used under torch.func transforms (the forward-mode one, or with ``sample_dims`` its
    subclass with a folding vmap rule, :func:`_folding_functions`)."""
    # The Functions close over plain functions and constants only: Dynamo cannot trace a
    # Function whose rules close over other objects.

    class Plain(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(layout: _Layout, *tensors: Tensor) -> Tensor:
            return _checked_output(name, forward_fn(*layout.rebuild(tensors)))

        @staticmethod
        def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
            layout = inputs[0]
            ctx.layout = layout
            ctx.save_for_backward(*inputs[1 : 1 + len(layout.tensor_slots)])

        @staticmethod
        def backward(  # pyright: ignore[reportIncompatibleMethodOverride]
            ctx: Any, grad: Tensor
        ) -> tuple[Tensor | None, ...]:
            grads = _run_backward(name, params, backward_fn, ctx.layout, grad, ctx.saved_tensors)
            return (None, *grads, *_PADDING[len(grads) :])

    class ForwardMode(Plain):
        @staticmethod
        def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
            Plain.setup_context(ctx, inputs, output)
            ctx.save_for_forward(*inputs[1 : 1 + len(inputs[0].tensor_slots)])
            ctx.output_shape = output.shape

        @staticmethod
        def jvp(  # pyright: ignore[reportIncompatibleMethodOverride]
            ctx: Any, layout_tangent: None, *tangents: Tensor | None
        ) -> Tensor:
            tensors = ctx.saved_tensors
            return _run_jvp(
                name, jvp_fn, ctx.layout, ctx.output_shape, tangents[: len(tensors)], tensors
            )

    Plain.forward.__signature__ = _FORWARD_SIGNATURE  # type: ignore[attr-defined]
    for cls, suffix in ((Plain, ""), (ForwardMode, "ForwardMode")):
        cls.__name__ = cls.__qualname__ = f"_{name}{suffix}"
    if sample_dims is None:
        return Plain, ForwardMode, ForwardMode
    folding = _folding_functions(name, params, ForwardMode, backward_fn, sample_dims)
    return Plain, ForwardMode, folding


def _call_sample_dims(
    layout: _Layout, sample_dims: tuple[int | None, ...]
) -> tuple[int, ...] | None:
    """Each of a call's tensors' sample dimension, or ``None`` where the call cannot fold (a
    pytree argument, or a tensor argument without a declared sample dimension)."""
    if layout.treespec is not None:
        return None
    dims = tuple(sample_dims[slot] for slot in layout.tensor_slots)
    return None if None in dims else cast(tuple[int, ...], dims)


def _fold(
    tensors: Sequence[Tensor], in_dims: Sequence[int | None], dims: Sequence[int], size: int
) -> list[Tensor]:
    """Each tensor with its vmapped dimension (of ``size``; broadcast where it has none) moved
    before its sample dimension and merged with it, vmapped index major."""
    folded = []
    for tensor, in_dim, dim in zip(tensors, in_dims, dims, strict=True):
        if in_dim is None:  # copied: an expanded tensor would share memory between samples
            tensor = tensor.unsqueeze(dim).expand(*tensor.shape[:dim], size, *tensor.shape[dim:])
            folded.append(tensor.flatten(dim, dim + 1).contiguous())
        else:
            folded.append(tensor.movedim(in_dim, dim).flatten(dim, dim + 1))
    return folded


def _differentiable_part(
    ctx: Any, gradients: Callable[[_Layout, Tensor, Sequence[Tensor]], tuple[Any, ...]]
) -> tuple[Callable[..., tuple[Tensor, ...]], tuple[Tensor, ...], list[int]]:
    """A folded backward's computation as a function of its floating inputs (the incoming
    gradient first) returning its gradients that are not ``None``, those inputs, and their
    positions among the loss's tensors: what ``torch.func.vjp`` and ``jvp`` differentiate."""
    grad, *tensors = ctx.saved_tensors
    floating = [i for i, t in enumerate(tensors) if t.is_floating_point() or t.is_complex()]

    def present(grad: Tensor, *inputs: Tensor) -> tuple[Tensor, ...]:
        full = list(tensors)
        for i, tensor in zip(floating, inputs, strict=True):
            full[i] = tensor
        return tuple(g for g in gradients(ctx.layout, grad, full) if g is not None)

    return present, (grad, *(tensors[i] for i in floating)), floating


def _folding_functions(
    name: str,
    params: tuple[str, ...],
    forward_mode: type[torch.autograd.Function],
    backward_fn: Callable[..., Any] | None,
    sample_dims: tuple[int | None, ...],
) -> type[torch.autograd.Function]:
    """The Function of a samplewise loss under torch.func transforms (``sample_dims``):
    ``forward_mode``'s rules, with a vmap rule that folds the vmapped dimension into the
    samples, and a backward that is itself a Function with such a rule. Its backward (double
    backward) is the vjp of the backward's ops, which are differentiable."""

    def gradients(layout: _Layout, grad: Tensor, tensors: Sequence[Tensor]) -> tuple[Any, ...]:
        return _run_backward(name, params, backward_fn, layout, grad, tensors)

    class FoldedBackward(torch.autograd.Function):
        @staticmethod
        def forward(layout: _Layout, grad: Tensor, *tensors: Tensor) -> tuple[Any, ...]:
            return gradients(layout, grad, tensors)

        @staticmethod
        def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
            ctx.layout = inputs[0]
            ctx.present = tuple(g is not None for g in output)
            ctx.save_for_backward(*inputs[1:])
            ctx.save_for_forward(*inputs[1:])

        @staticmethod
        def backward(  # pyright: ignore[reportIncompatibleMethodOverride]
            ctx: Any, *cotangents: Tensor | None
        ) -> tuple[Tensor | None, ...]:
            present, primals, floating = _differentiable_part(ctx, gradients)
            outputs, pull = torch.func.vjp(present, *primals)[:2]
            kept = [c for c, m in zip(cotangents, ctx.present, strict=True) if m]
            results = pull(
                tuple(
                    torch.zeros_like(o) if c is None else c
                    for c, o in zip(kept, outputs, strict=True)
                )
            )
            input_grads: list[Tensor | None] = [None] * len(ctx.present)
            for i, g in zip(floating, results[1:], strict=True):
                input_grads[i] = g
            return (None, results[0], *input_grads)

        @staticmethod
        def jvp(  # pyright: ignore[reportIncompatibleMethodOverride]
            ctx: Any, layout_tangent: None, grad_tangent: Tensor | None, *tangents: Tensor | None
        ) -> tuple[Tensor | None, ...]:
            present, primals, floating = _differentiable_part(ctx, gradients)
            given = (grad_tangent, *(tangents[i] for i in floating))
            # contiguous: a dual tensor cannot be made of an expanded one (the incoming
            # gradient of a sum is)
            pushed = torch.func.jvp(
                present,
                tuple(p.contiguous() for p in primals),
                tuple(
                    torch.zeros_like(p) if t is None else t.contiguous()
                    for t, p in zip(given, primals, strict=True)
                ),
            )[1]
            out = iter(pushed)
            return tuple(next(out) if m else None for m in ctx.present)

        @staticmethod
        def vmap(  # pyright: ignore[reportIncompatibleMethodOverride]
            info: Any, in_dims: tuple[Any, ...], layout: _Layout, grad: Tensor, *tensors: Tensor
        ) -> tuple[tuple[Any, ...], tuple[int | None, ...]]:
            dims = _call_sample_dims(layout, sample_dims)
            if dims is None or all(d is None for d in in_dims[2:]):
                mask: list[bool] = []

                def batched(grad: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
                    out = gradients(layout, grad, tensors)
                    mask[:] = [g is not None for g in out]
                    return tuple(g for g in out if g is not None)

                got = iter(
                    torch.vmap(batched, in_dims=in_dims[1:], randomness=info.randomness)(
                        grad, *tensors
                    )
                )
                out = tuple(next(got) if m else None for m in mask)
                return out, tuple(0 if m else None for m in mask)
            size = info.batch_size
            folded = _fold((grad, *tensors), in_dims[1:], (0, *dims), size)
            out = FoldedBackward.apply(layout, *folded)
            pairs = list(zip(out, dims, strict=True))
            return (
                tuple(None if g is None else g.unflatten(d, (size, -1)) for g, d in pairs),
                tuple(None if g is None else d for g, d in pairs),
            )

    class Folding(forward_mode):  # type: ignore[misc, valid-type]
        generate_vmap_rule = False

        @staticmethod
        def backward(  # pyright: ignore[reportIncompatibleMethodOverride]
            ctx: Any, grad: Tensor
        ) -> tuple[Tensor | None, ...]:
            grads = FoldedBackward.apply(ctx.layout, grad, *ctx.saved_tensors)
            return (None, *grads, *_PADDING[len(grads) :])

        @staticmethod
        def vmap(  # pyright: ignore[reportIncompatibleMethodOverride]
            info: Any, in_dims: tuple[Any, ...], layout: _Layout, *tensors: Tensor
        ) -> tuple[Tensor, int]:
            count = len(layout.tensor_slots)
            real, real_dims = tensors[:count], in_dims[1 : 1 + count]
            dims = _call_sample_dims(layout, sample_dims)
            if dims is None:  # the generated rule: the forward-mode Function under vmap
                output = torch.vmap(
                    lambda *t: forward_mode.apply(layout, *t, *_PADDING[count:]),
                    in_dims=real_dims,
                    randomness=info.randomness,
                )(*real)
                return output, 0
            size = info.batch_size
            folded = _fold(real, real_dims, dims, size)
            output = Folding.apply(layout, *folded, *_PADDING[count:])
            samples = folded[0].shape[dims[0]]
            if output.dim() == 0 or output.shape[0] != samples:
                raise ValueError(
                    f"{name}: declared samplewise (sample_dims), its output must have one "
                    f"entry per sample along dimension 0 ({samples} here, the vmapped samples "
                    f"folded in), got shape {shape_str(output.shape)}."
                )
            return output.unflatten(0, (size, -1)), 0

    for cls, suffix in ((Folding, "Folding"), (FoldedBackward, "FoldedBackward")):
        cls.__name__ = cls.__qualname__ = f"_{name}{suffix}"
    return Folding


def custom_backward(forward: Callable[P, Tensor]) -> CustomBackwardLoss[P]:
    r"""Give a loss made of torch ops a hand-written backward (and jvp) that works under torch.func.

    Use it where a closed-form derivative buys memory, speed or exactness over autograd; a plain
    composition of torch ops needs nothing. The result is an ``autograd.Function`` built the way
    torch.func needs it, so it works with ``grad``, ``vmap``, ``jacrev``, ``jacfwd``, ``hessian``,
    ``jacrev(jacrev)`` and ``torch.compile(fullgraph=True)``, and with :func:`loss_module`.

    The rules, which :func:`funcloss.testing.check_loss` verifies:

    - ``backward(grad, *args)`` gets the output's gradient, then the forward's arguments, and
      returns one gradient per tensor argument, in order (``None`` where there is none). An
      argument that is ``None`` in the call (an optional tensor left out) counts as a tensor
      argument and takes ``None``, so give non-tensor config a default other than ``None``. A
      pytree argument (tuple, list or dict of tensors) takes a pytree of the same structure.
    - Build the backward from differentiable torch ops on the inputs (no ``.detach()``,
      ``.item()``, NumPy or ``@once_differentiable``): double backward then differentiates it,
      and ``hessian`` and ``jacrev(jacrev)`` are exact.
    - ``jvp(*tangents, *args)`` (optional) gets one tangent per tensor argument (zeros where the
      caller gave none, ``None`` for an argument that is ``None``), then the forward's
      arguments, and returns the output's tangent. Forward mode (``jacfwd``, ``hessian``,
      ``torch.func.jvp``) needs it.
    - Pass every tensor the loss depends on as an argument: a tensor captured from a closure or
      a global gets zero gradients under ``grad``.
    - The forward must itself be correct to differentiate: inside ``torch.compile`` under a
      torch.func transform (``compile(grad(f))``), torch autodiffs the forward and drops the
      custom rules.
    - Keyword-only config (``def f(input, target, *, sigma=1.0)``) reaches the rules by
      keyword, after the positional arguments: ``backward(grad, input, target, *, sigma)`` and
      ``jvp(input_t, target_t, input, target, *, sigma)``.
    - ``loss.sample_dims(input=0, target=0)`` (optional) declares a loss whose output element
      ``n`` depends only on sample ``n`` of each named argument (along the given dimension):
      under ``vmap`` the vmapped samples are then folded into the loss's own, and the forward
      and the backward run once for all of them (a loss that loops in Python, as
      ``ctc_loss`` over frames, then runs at its batched speed) instead of each op batched in
      turn. The backward must return each gradient with its argument's sample dimension.

    Args:
        forward: ``forward(*args) -> Tensor``. Tensor arguments (or pytrees of tensors) are the
            differentiable inputs; other arguments are config.

    Returns:
        A callable that behaves like ``forward``, with ``.backward`` and ``.jvp`` decorators that
        register the rules (and return the function they decorate).

    Raises:
        TypeError: ``forward`` (or a registered rule) is not a function, or ``forward`` takes
            ``*args``/``**kwargs``. At call time, naming the loss and the argument: no backward
            registered, a backward returning the wrong number of gradients or a non-tensor
            gradient, a jvp returning a non-tensor.
        ValueError: at call time, a gradient or jvp tangent of the wrong shape.
        NotImplementedError: forward mode without a registered jvp.

    Examples:
        >>> @custom_backward
        ... def squared_error(input, target):
        ...     return (input - target) ** 2
        >>> @squared_error.backward
        ... def _(grad, input, target):
        ...     d = 2 * (input - target) * grad
        ...     return d, -d
        >>> @squared_error.jvp
        ... def _(input_t, target_t, input, target):
        ...     return 2 * (input - target) * (input_t - target_t)
        >>> x = torch.tensor([1.0, 2.0], requires_grad=True)
        >>> squared_error(x, torch.zeros(2)).sum().backward()
        >>> x.grad
        tensor([2., 4.])
        >>> torch.func.hessian(lambda x: squared_error(x, torch.zeros(2)).sum())(torch.ones(2))
        tensor([[2., 0.],
                [0., 2.]])
    """
    return CustomBackwardLoss(forward)


# -- the eager slope step ----------------------------------------------------------------------


class SlopeRule(NamedTuple):
    """One loss's eager step for :class:`SlopeStep`; ``config`` is the call's non-tensor
    arguments (any object, passed to every rule), ``kept`` what ``forward`` keeps besides the
    slope (or ``None``).

    - ``forward(input, target, config) -> (value, slope, kept)``: the loss and the slope
      ``d loss / d input`` before the backward's factor (``None`` where none is kept: the
      backward then calls ``gradient``). It may raise to refuse the values (the caller then
      runs the composition).
    - ``scale(slope, grad, config, kept) -> gradient``: the gradient written into the slope's
      own buffer (in place, once).
    - ``gradient(input, target, grad, config, kept) -> gradient``: the same from the saved
      inputs, in differentiable ops under ``create_graph``, rounded as ``scale`` is otherwise (a
      second backward of a retained graph gives the first one's bits).
    """

    forward: Callable[[Tensor, Tensor, Any], tuple[Tensor, Tensor | None, Any]]
    scale: Callable[[Tensor, Tensor, Any, Any], Tensor]
    gradient: Callable[[Tensor, Tensor, Tensor, Any, Any], Tensor]


class SlopeStep(torch.autograd.Function):
    """The eager training step: ``SlopeStep.apply(rule, input, target, config)``.

    The forward runs ``rule.forward`` and keeps the slope on ``ctx`` (not in
    ``saved_tensors``: no version counter check, so the backward may write into it); the first
    backward scales it in place into the gradient (no new allocation, one pass) and drops it.
    With ``create_graph`` (double backward) or a second backward of a retained graph, it
    recomputes the gradient from the saved inputs (``rule.gradient``). ``target`` takes no
    gradient.

    Eager only (the callers' gates ask :func:`funcloss._checks.eager_mode`): the ``ctx`` slope
    is an intermediate, which transforms cannot use (docs/design.md §3). A family subclasses it
    with only a docstring, for a ``grad_fn`` of its own name, and calls :meth:`run`.
    """

    _apply: Callable[..., Tensor]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._apply = _C_APPLY.__get__(None, cls)

    @classmethod
    def run(cls, rule: SlopeRule, input: Tensor, target: Tensor, config: Any) -> Tensor:
        """``cls.apply(rule, input, target, config)`` without ``Function.apply``'s Python layer
        (its signature test, its functorch test, a generator over every argument): a quarter
        of a 64x10 step's forward. The callers' gates have ruled out transforms already
        (:func:`funcloss._checks.eager_mode`); the tensors are still unwrapped as that layer
        does outside a transform."""
        return cls._apply(rule, _unwrap_if_dead(input), _unwrap_if_dead(target), config)

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, rule: SlopeRule, input: Tensor, target: Tensor, config: Any
    ) -> Tensor:
        value, ctx.slope, ctx.kept = rule.forward(input, target, config)
        ctx.rule, ctx.config = rule, config
        ctx.save_for_backward(input, target)
        return value

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad: Tensor
    ) -> tuple[None, Tensor, None, None]:
        slope, ctx.slope = ctx.slope, None
        if slope is None or torch.is_grad_enabled():
            input, target = ctx.saved_tensors
            return None, ctx.rule.gradient(input, target, grad, ctx.config, ctx.kept), None, None
        return None, ctx.rule.scale(slope, grad, ctx.config, ctx.kept), None, None
