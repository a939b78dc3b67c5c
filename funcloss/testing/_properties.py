"""The properties check_loss verifies, one method each.

A method returns what it compared, raises :class:`Skipped` when the property does not apply and
:class:`Failed` when it does not hold. The reference runs in plain eager mode only and is
differentiated by plain autograd (``torch.autograd.functional``), never by torch.func, so a
reference that itself lacks a batching rule, forward mode or double backward still serves.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

import optree
import torch
from torch import Tensor, nn
from torch.autograd.gradcheck import GradcheckError
from torch.func import grad, hessian, jacfwd, jacrev, vmap

from ._diagnosis import (
    BACKWARD_WRONG,
    FORWARD_NOT_DIFFERENTIABLE,
    NOT_DIFFERENTIABLE,
    Failed,
    Skipped,
    compare,
    describe,
    forward_mode_missing,
    raised,
    reference_call,
    running,
)

# Default (rtol, atol) by dtype: torch.testing.assert_close's.
_TOLERANCES = {
    torch.float64: (1e-7, 1e-7),
    torch.float32: (1.3e-6, 1e-5),
    torch.bfloat16: (1.6e-2, 1e-5),
    torch.float16: (1e-3, 1e-5),
}
# gradcheck's tolerances, for the largest error reported when gradcheck or gradgradcheck fail:
# central differences in float64 with step _FD_EPS are not exact.
_FD_EPS, _FD_RTOL, _FD_ATOL = 1e-6, 1e-3, 1e-5


class Problem:
    """One call of the loss: inputs, config, the positions to differentiate, tolerances."""

    def __init__(
        self,
        fn: Callable[..., Tensor],
        inputs: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        wrt: Sequence[int] | None,
        rtol: float | None,
        atol: float | None,
        names: Sequence[str] | None = None,
        restore: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None = None,
    ) -> None:
        self.fn = fn
        self.name = getattr(fn, "__name__", type(fn).__name__)
        self.inputs = inputs
        self.kwargs = dict(kwargs)
        self.names = list(names) if names is not None else _parameter_names(fn, len(inputs))
        # the caller's inputs from ``inputs`` (which hold the leaves of pytree inputs)
        self.restore = restore if restore is not None else (lambda xs: xs)
        if wrt is None:
            wrt = [i for i, x in enumerate(inputs) if _is_float_tensor(x)]
        for i in wrt:
            if not 0 <= i < len(inputs) or not _is_float_tensor(inputs[i]):
                got = describe(inputs[i]) if 0 <= i < len(inputs) else "no such input"
                raise ValueError(
                    "check_loss: `wrt` must hold positions of floating-point tensor inputs, "
                    f"got {i} ({got})."
                )
        self.wrt = tuple(wrt)
        dtype = next((x.dtype for x in inputs if _is_float_tensor(x)), torch.float64)
        default_rtol, default_atol = _TOLERANCES.get(dtype, _TOLERANCES[torch.float32])
        self.rtol = default_rtol if rtol is None else rtol
        self.atol = default_atol if atol is None else atol

    def call(self, f: Callable[..., Tensor], replace: Mapping[int, Any] | None = None) -> Tensor:
        args = list(self.inputs)
        for i, x in (replace or {}).items():
            args[i] = x
        return f(*args, **self.kwargs)

    def of(self, f: Callable[..., Tensor], i: int, total: bool = False) -> Callable[..., Tensor]:
        """``x -> f(inputs with inputs[i] = x)``, summed to a scalar if ``total``."""

        def partial(x: Tensor) -> Tensor:
            out = self.call(f, {i: x})
            return out.sum() if total else out

        return partial

    def of_wrt(self, f: Callable[..., Tensor]) -> Callable[..., Tensor]:
        """``(*xs) -> f(inputs with the differentiated inputs replaced by xs)``."""

        def partial(*xs: Tensor) -> Tensor:
            return self.call(f, dict(zip(self.wrt, xs, strict=True)))

        return partial

    def label(self, i: int) -> str:
        return f"input {i} (`{self.names[i]}`)"

    def wrt_text(self) -> str:
        return "w.r.t. " + ", ".join(self.label(i) for i in self.wrt)

    def describe(self) -> str:
        parts = [f"{self.names[i]}={describe(x)}" for i, x in enumerate(self.inputs)]
        parts += [f"{k}={describe(v)}" for k, v in self.kwargs.items()]
        return ", ".join(parts)

    def compare(self, what: str, actual: Any, expected: Tensor) -> None:
        compare(what, actual, expected, self.rtol, self.atol)


class Checker:
    """The properties of one problem; ``held`` collects those that held so far."""

    def __init__(
        self,
        problem: Problem,
        reference: Callable[..., Tensor] | None,
        module: type[nn.Module] | nn.Module | None,
        in_dims: Sequence[int | None] | None,
        reference_second_order: bool,
        compile_backend: str,
    ) -> None:
        self.p = problem
        self.reference = reference
        self.module_under_test = module
        self.in_dims = in_dims
        self.reference_second_order = reference_second_order
        self.compile_backend = compile_backend
        self.held: set[str] = set()
        self.forward_mode = True
        if in_dims is not None and len(in_dims) != len(problem.inputs):
            raise ValueError(
                f"check_loss: `in_dims` must have one entry per input ({len(problem.inputs)}), "
                f"got {len(in_dims)}."
            )

    def _reference(self) -> Callable[..., Tensor]:
        if self.reference is None:
            raise Skipped("no reference given")
        return self.reference

    def _wrt(self) -> tuple[int, ...]:
        if not self.p.wrt:
            raise Skipped("no differentiable input (`wrt` is empty)")
        return self.p.wrt

    def _reference_jacobian(self, i: int) -> Tensor:
        reference = self._reference()
        return reference_call(
            f"its Jacobian w.r.t. {self.p.label(i)}",
            lambda: _autograd_jacobian(self.p.of(reference, i), self.p.inputs[i]),
        )

    # -- values and first derivatives --------------------------------------------------------

    def value(self) -> str:
        reference = self._reference()
        expected = reference_call("its value", lambda: self.p.call(reference))
        with running("fn"):
            actual = self.p.call(self.p.fn)
        if isinstance(actual, Tensor) and actual.dtype != expected.dtype:
            raise Failed(f"fn returns {actual.dtype}, the reference {expected.dtype}")
        self.p.compare("fn(*inputs) vs reference(*inputs)", actual, expected)
        return "fn(*inputs) matches reference(*inputs)"

    def jacrev(self) -> str:
        for i in self._wrt():
            expected = self._reference_jacobian(i)
            with running(f"torch.func.jacrev(fn) w.r.t. {self.p.label(i)}"):
                actual = jacrev(self.p.of(self.p.fn, i))(self.p.inputs[i])
            what = f"jacrev(fn) w.r.t. {self.p.label(i)} vs the reference's autograd Jacobian"
            self._compare_derivative(what, actual, expected, "value", BACKWARD_WRONG)
        return f"jacrev(fn) matches the reference's autograd Jacobian, {self.p.wrt_text()}"

    def jacfwd(self) -> str:
        for i in self._wrt():
            x = self.p.inputs[i]
            try:
                actual = jacfwd(self.p.of(self.p.fn, i))(x)
            except Exception as error:
                if forward_mode_missing(error):
                    self.forward_mode = False
                    first = str(error).splitlines()[0]
                    raise Skipped(f"fn has no forward mode ({first})") from None
                raise raised(f"torch.func.jacfwd(fn) w.r.t. {self.p.label(i)}", error) from error
            if self.reference is not None:
                against, expected = "the reference's autograd Jacobian", self._reference_jacobian(i)
            else:
                against = "jacrev(fn)"
                with running(f"torch.func.jacrev(fn) w.r.t. {self.p.label(i)}"):
                    expected = jacrev(self.p.of(self.p.fn, i))(x)
            self.p.compare(f"jacfwd(fn) w.r.t. {self.p.label(i)} vs {against}", actual, expected)
        against = "the reference's autograd Jacobian" if self.reference else "jacrev(fn)"
        return f"jacfwd(fn) matches {against}, {self.p.wrt_text()}"

    def _compare_derivative(
        self, what: str, actual: Tensor, expected: Tensor, given: str, meaning: str
    ) -> None:
        """Compare; if property ``given`` held, add what the mismatch means."""
        try:
            self.p.compare(what, actual, expected)
        except Failed as failure:
            if given in self.held:
                raise Failed(f"{failure} {meaning}") from None
            raise

    # -- finite differences ------------------------------------------------------------------

    def gradcheck(self) -> str:
        f, xs = self._float64_problem()
        try:
            with _seeded():
                torch.autograd.gradcheck(f, xs)
        except GradcheckError as error:
            self._largest_fd_error(
                "autograd Jacobian vs finite differences",
                error,
                lambda k: _autograd_jacobian(_one(f, xs, k), xs[k]),
                lambda k: _central_differences(_one(f, xs, k), xs[k]),
            )
        except Exception as error:
            raise raised("torch.autograd.gradcheck(fn)", error) from error
        return f"torch.autograd.gradcheck passes in float64, {self.p.wrt_text()}"

    def gradgradcheck(self) -> str:
        f, xs = self._float64_problem()
        with running("fn"):
            cotangent = _cotangent(f(*xs).detach())
        try:
            with _seeded():  # fast mode: random projections of the second derivative
                torch.autograd.gradgradcheck(f, xs, (cotangent,), fast_mode=True)
        except GradcheckError as error:
            self._largest_fd_error(
                "autograd Hessian vs finite differences of the gradient",
                error,
                lambda k: _autograd_hessian(_one(f, xs, k, total=True), xs[k]),
                lambda k: _central_differences(_gradient(_one(f, xs, k, total=True)), xs[k]),
            )
        except Exception as error:
            raise raised("torch.autograd.gradgradcheck(fn)", error) from error
        return f"torch.autograd.gradgradcheck passes in float64, {self.p.wrt_text()}"

    def _float64_problem(self) -> tuple[Callable[..., Tensor], tuple[Tensor, ...]]:
        """``f(*xs)``: fn of the differentiated inputs, everything in float64."""
        self._wrt()
        inputs = [_float64(x) for x in self.p.inputs]
        kwargs = {
            k: optree.tree_map(_float64, v, none_is_leaf=True) for k, v in self.p.kwargs.items()
        }

        def f(*xs: Tensor) -> Tensor:
            args = list(inputs)
            for i, x in zip(self.p.wrt, xs, strict=True):
                args[i] = x
            return self.p.fn(*args, **kwargs)

        return f, tuple(inputs[i].requires_grad_() for i in self.p.wrt)

    def _largest_fd_error(
        self,
        what: str,
        error: GradcheckError,
        analytical: Callable[[int], Tensor],
        numerical: Callable[[int], Tensor],
    ) -> None:
        """Raise :class:`Failed` with the largest error found, or torch's message."""
        torch_says = str(error).strip().splitlines()[0].rstrip(",")
        for k, i in enumerate(self.p.wrt):
            with running("fn"):
                got = analytical(k)
                expected = numerical(k).reshape(got.shape)
            compare(
                f"{what} w.r.t. {self.p.label(i)} (torch: {torch_says})",
                got,
                expected,
                _FD_RTOL,
                _FD_ATOL,
            )
        raise Failed(f"torch says: {torch_says}")

    # -- second derivatives --------------------------------------------------------------------

    def hessian(self) -> str:
        compared: dict[str, list[str]] = {}
        for i in self._wrt():
            x = self.p.inputs[i]
            total = self.p.of(self.p.fn, i, total=True)
            with running(f"torch.func.jacrev(jacrev(fn)) w.r.t. {self.p.label(i)}"):
                ours = {"jacrev(jacrev(fn))": jacrev(jacrev(total))(x)}
            if self.forward_mode:
                try:
                    ours["hessian(fn)"] = hessian(total)(x)
                except Exception as error:
                    if not forward_mode_missing(error):
                        what = f"torch.func.hessian(fn) w.r.t. {self.p.label(i)}"
                        raise raised(what, error) from error
                    self.forward_mode = False
            expected, against = self._reference_hessian(i)
            if expected is None:
                if len(ours) < 2:
                    raise Skipped(
                        f"{against}, and fn has no forward mode to compare jacrev(jacrev(fn)) "
                        "with: gradgradcheck checks second derivatives"
                    )
                expected = ours.pop("jacrev(jacrev(fn))")
                against = f"jacrev(jacrev(fn)) ({against})"
            for name, actual in ours.items():
                what = f"{name} w.r.t. {self.p.label(i)} vs {against}"
                self._compare_derivative(what, actual, expected, "jacrev", NOT_DIFFERENTIABLE)
                names = compared.setdefault(against, [])
                names += [] if name in names else [name]
        text = "; ".join(
            f"{' and '.join(names)} {'match' if len(names) > 1 else 'matches'} {against}"
            for against, names in compared.items()
        )
        return f"{text}, {self.p.wrt_text()}"

    def _reference_hessian(self, i: int) -> tuple[Tensor | None, str]:
        if self.reference is None:
            return None, "no reference"
        if not self.reference_second_order:
            return None, "the reference has no second derivatives"
        f = self.p.of(self.reference, i, total=True)
        try:
            expected = _autograd_hessian(f, self.p.inputs[i])
        except Exception:  # no double backward: compare ours with each other
            return None, "the reference's double backward raised"
        return expected, "the reference's autograd Hessian"

    # -- transforms ----------------------------------------------------------------------------

    def vmap(self) -> str:
        inputs, dims = self._batched()
        n = next((x.shape[d] for x, d in zip(inputs, dims, strict=True) if d is not None), 0)
        if n == 0:
            raise Skipped("no input to batch")
        slices = [
            tuple(x if d is None else x.select(d, k) for x, d in zip(inputs, dims, strict=True))
            for k in range(n)
        ]

        def f(*args: Any) -> Tensor:
            return self.p.fn(*args, **self.p.kwargs)

        with running("fn, called once per problem"):
            looped = torch.stack([f(*args) for args in slices])
        with running("torch.func.vmap(fn)"), _no_vmap_fallback():
            batched = vmap(f, in_dims=tuple(dims))(*inputs)
        self.p.compare("vmap(fn) vs a loop over the problems", batched, looped)
        done = f"vmap(fn) matches a loop over {n} problems (no fallback)"
        if not self.p.wrt:
            return done
        i = self.p.wrt[0]

        def total(*args: Any) -> Tensor:
            return f(*args).sum()

        expected = []
        for args in slices:
            x = args[i].detach().requires_grad_()
            with running("fn's backward"):
                expected.append(torch.autograd.grad(total(*args[:i], x, *args[i + 1 :]), x)[0])
        with running("torch.func.vmap(grad(fn))"), _no_vmap_fallback():
            batched_grad = vmap(grad(total, argnums=i), in_dims=tuple(dims))(*inputs)
        what = f"vmap(grad(fn)) w.r.t. {self.p.label(i)} vs a loop"
        self.p.compare(what, batched_grad, torch.stack(expected))
        return f"{done}, and so does vmap(grad(fn)) w.r.t. {self.p.label(i)}"

    def _batched(self) -> tuple[list[Any], list[int | None]]:
        """The inputs batched for vmap, and their in_dims."""
        if self.in_dims is not None:
            return list(self.p.inputs), list(self.in_dims)
        # Two problems along a new dim 0: the given one, and each tensor flipped along its last
        # dimension (which keeps elementwise domains, and class indices valid).
        inputs: list[Any] = []
        dims: list[int | None] = []
        for x in self.p.inputs:
            if isinstance(x, Tensor):
                inputs.append(torch.stack([x, x.flip(-1) if x.dim() else x]))
                dims.append(0)
            else:
                inputs.append(x)
                dims.append(None)
        return inputs, dims

    def compile(self) -> str:
        torch.compiler.reset()
        f = self.p.of_wrt(self.p.fn)
        compiled = torch.compile(f, fullgraph=True, backend=self.compile_backend)
        xs = [self.p.inputs[i].detach().requires_grad_() for i in self.p.wrt]
        eager_xs = [x.detach().requires_grad_() for x in xs]
        with running("fn"):
            expected = f(*eager_xs)
        backend = f"backend={self.compile_backend!r}"
        with running(f"torch.compile(fn, fullgraph=True, {backend})"):
            actual = compiled(*xs)
        self.p.compare("compiled fn vs eager", actual, expected)
        if not xs:
            return f"torch.compile(fn, fullgraph=True, {backend}) matches eager (forward)"
        cotangent = _cotangent(expected.detach())
        with running("fn's backward"):
            eager_grads = torch.autograd.grad(expected, eager_xs, cotangent)
        with running("the compiled backward"):
            grads = torch.autograd.grad(actual, xs, cotangent)
        for i, got, want in zip(self.p.wrt, grads, eager_grads, strict=True):
            self.p.compare(f"compiled backward w.r.t. {self.p.label(i)} vs eager", got, want)
        return f"torch.compile(fn, fullgraph=True, {backend}) matches eager, forward and backward"

    def compile_grad(self) -> str:
        wrt = self._wrt()
        torch.compiler.reset()
        f = self.p.of_wrt(self.p.fn)

        def total(*xs: Tensor) -> Tensor:
            return f(*xs).sum()

        argnums = tuple(range(len(wrt)))
        compiled = torch.compile(grad(total, argnums), fullgraph=True, backend=self.compile_backend)
        backend = f"backend={self.compile_backend!r}"
        with running(f"torch.compile(grad(fn), fullgraph=True, {backend})"):
            actual = compiled(*[self.p.inputs[i] for i in wrt])
        against = "the reference's gradient" if self.reference is not None else "eager grad(fn)"
        for k, i in enumerate(wrt):
            x = self.p.inputs[i]
            if self.reference is not None:
                against = "the reference's gradient"
                gradient = _gradient(self.p.of(self.reference, i, total=True))
                expected = reference_call(
                    f"its gradient w.r.t. {self.p.label(i)}", functools.partial(gradient, x)
                )
            else:
                against = "eager grad(fn)"
                with running("fn's backward"):
                    expected = _gradient(self.p.of(self.p.fn, i, total=True))(x)
            what = f"compile(grad(fn)) w.r.t. {self.p.label(i)} vs {against}"
            try:
                self.p.compare(what, actual[k], expected)
            except Failed as failure:
                raise Failed(f"{failure} {FORWARD_NOT_DIFFERENTIABLE}") from None
        return (
            f"torch.compile(grad(fn), fullgraph=True, {backend}) matches {against}, "
            f"{self.p.wrt_text()}"
        )

    def compile_vmap_grad(self) -> str:
        wrt = self._wrt()
        i = wrt[0]
        inputs, dims = self._batched()
        n = next((x.shape[d] for x, d in zip(inputs, dims, strict=True) if d is not None), 0)
        if n == 0:
            raise Skipped("no input to batch")
        torch.compiler.reset()

        def total(*args: Any) -> Tensor:
            return self.p.fn(*args, **self.p.kwargs).sum()

        per_sample = vmap(grad(total, argnums=i), in_dims=tuple(dims))
        compiled = torch.compile(per_sample, fullgraph=True, backend=self.compile_backend)
        backend = f"backend={self.compile_backend!r}"
        with running(f"torch.compile(vmap(grad(fn)), fullgraph=True, {backend})"):
            actual = compiled(*inputs)
        slices = [
            [x if d is None else x.select(d, k) for x, d in zip(inputs, dims, strict=True)]
            for k in range(n)
        ]
        if self.reference is not None:
            against, reference = "the reference's gradients", self.reference
            gradients = [
                reference_call(
                    f"its gradient w.r.t. {self.p.label(i)}",
                    functools.partial(_gradient(_at(reference, args, i, self.p.kwargs)), args[i]),
                )
                for args in slices
            ]
        else:
            against = "a loop of eager grad(fn)"
            with running("fn's backward"):
                gradients = [
                    _gradient(_at(self.p.fn, args, i, self.p.kwargs))(args[i]) for args in slices
                ]
        what = f"compile(vmap(grad(fn))) w.r.t. {self.p.label(i)} vs {against}"
        try:
            self.p.compare(what, actual, torch.stack(gradients))
        except Failed as failure:
            raise Failed(f"{failure} {FORWARD_NOT_DIFFERENTIABLE}") from None
        return (
            f"torch.compile(vmap(grad(fn)), fullgraph=True, {backend}) over {n} problems matches "
            f"{against}, "
            f"w.r.t. {self.p.label(i)}"
        )

    def module(self) -> str:
        if self.module_under_test is None:
            raise Skipped("no module given")
        with running("the module"):
            if isinstance(self.module_under_test, nn.Module):
                instance = self.module_under_test
            else:
                instance = self.module_under_test(**self.p.kwargs)
            actual = instance(*self.p.restore(self.p.inputs))
        with running("fn"):
            expected = self.p.call(self.p.fn)
        name = type(instance).__name__
        self.p.compare(f"{name}(**kwargs)(*inputs) vs fn(*inputs, **kwargs)", actual, expected)
        return f"{name}(**kwargs)(*inputs) matches fn"


# -- helpers -----------------------------------------------------------------------------------


def _parameter_names(fn: Callable[..., Tensor], n: int) -> list[str]:
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = [p.name for p in parameters if p.kind in positional]
    return [names[i] if i < len(names) else f"arg{i}" for i in range(n)]


def _is_float_tensor(x: object) -> bool:
    return isinstance(x, Tensor) and x.is_floating_point()


def _float64(value: Any) -> Any:
    return value.detach().double() if _is_float_tensor(value) else value


def _autograd_jacobian(f: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    return cast(Tensor, torch.autograd.functional.jacobian(f, x.detach(), vectorize=False))


def _autograd_hessian(f: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    return cast(Tensor, torch.autograd.functional.hessian(f, x.detach()))


def _one(f: Callable[..., Tensor], xs: tuple[Tensor, ...], k: int, total: bool = False):
    """``x -> f(*xs with xs[k] = x)`` (summed if ``total``)."""

    def partial(x: Tensor) -> Tensor:
        out = f(*xs[:k], x, *xs[k + 1 :])
        return out.sum() if total else out

    return partial


def _at(
    f: Callable[..., Tensor], args: Sequence[Any], i: int, kwargs: Mapping[str, Any]
) -> Callable[[Tensor], Tensor]:
    """``x -> f(*args with args[i] = x, **kwargs).sum()``."""

    def partial(x: Tensor) -> Tensor:
        return f(*args[:i], x, *args[i + 1 :], **kwargs).sum()

    return partial


def _gradient(f: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    def gradient(x: Tensor) -> Tensor:
        x = x.detach().requires_grad_()
        return torch.autograd.grad(f(x), x)[0]

    return gradient


def _central_differences(f: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """The Jacobian of ``f`` at ``x`` by central differences: ``f(x).shape + x.shape``."""
    x = x.detach()
    columns = []
    for k in range(x.numel()):
        step = torch.zeros(x.numel(), dtype=x.dtype)
        step[k] = _FD_EPS
        step = step.reshape(x.shape)
        columns.append(((f(x + step) - f(x - step)) / (2 * _FD_EPS)).detach())
    return torch.stack(columns, -1).reshape(*columns[0].shape, *x.shape)


def _cotangent(like: Tensor) -> Tensor:
    """A fixed, non-uniform output gradient (uniform ones would hide per-element errors)."""
    return torch.linspace(0.5, 1.5, like.numel(), dtype=like.dtype).reshape(like.shape)


@contextmanager
def _no_vmap_fallback() -> Iterator[None]:
    """Make torch's slow per-sample vmap fallback an error."""
    functorch: Any = torch._C._functorch  # pyright: ignore[reportAttributeAccessIssue]
    enabled = functorch._is_vmap_fallback_enabled()
    functorch._set_vmap_fallback_enabled(False)
    try:
        yield
    finally:
        functorch._set_vmap_fallback_enabled(enabled)


@contextmanager
def _seeded() -> Iterator[None]:
    """Fixed random probes for gradcheck, leaving the caller's RNG state alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield
