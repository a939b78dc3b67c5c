"""Parity with PyTorch's own loss test samples.

Builds one :class:`Case` per call that torch's own test-suite makes of a loss:

- every ``nn.functional.*`` loss OpInfo of ``torch.testing._internal.common_methods_invocations
  .op_db``: its ``reference_inputs`` (which fall back to ``sample_inputs``) in float32 and
  float64, and its ``error_inputs``;
- the criterion tests of ``torch.testing._internal.common_nn``: ``criterion_tests`` (module
  form, no-batch-dim inputs) and the loss entries of ``get_new_module_tests()`` (functional
  calls wrapped in a module), each in float32 and float64;
- the loss ModuleInfos of ``torch.testing._internal.common_modules.module_db`` (the new-style
  module tests), float32 and float64 (:func:`module_db_cases`);

and checks funcloss against torch on it (:func:`check`): values (and dtype, shape, warnings),
gradients w.r.t. every floating input that requires grad, errors raised for error inputs, the
module form, ``vmap`` against a loop and ``jacrev`` against torch's Jacobian. Where two float32
results differ by more than ``assert_close``'s tolerance, both are compared with torch's float64
result and funcloss may be at most twice as far from it as torch is.

torch's functional losses take the legacy ``size_average``/``reduce`` arguments positionally;
funcloss's are keyword-only from there on and take no legacy arguments. The harness binds every
sample to torch's signature, passes the arguments that funcloss takes positionally as positional
ones and the rest by keyword, and maps legacy arguments to ``reduction`` with torch's own rule
(``torch.nn._reduction.legacy_get_string``) when no explicit ``reduction`` contradicts them.

``python -m tests.parity_report`` prints the counts; ``tests/test_parity_torch.py`` is the test.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.func import grad, jacrev, vmap
from torch.utils import _pytree as pytree

import funcloss
import funcloss.nn as fnn

DTYPES = (torch.float32, torch.float64)
_DTYPE_NAMES = {torch.float32: "f32", torch.float64: "f64"}
LEGACY = ("size_average", "reduce")
# The checks, in the order they run; a case's failures are reported under these names.
CATEGORIES = (
    "call",  # funcloss raised where torch computes a result
    "value",  # values differ (beyond the float32 rule), or shape
    "dtype",  # output dtype differs
    "warning",  # torch warns (UserWarning) and funcloss does not, or the other way round
    "grad",  # gradients differ, or funcloss's backward raised
    "error",  # an error input: funcloss does not raise
    "error-type",  # an error input: funcloss raises another exception type than torch's sample
    "error-message",  # an error input: the message is not funcloss's template "<fn>: ..."
    "module",  # funcloss.nn.<Class> differs from torch.nn.<Class> (or cannot be built/called)
    "vmap",  # vmap(fn) / vmap(grad(fn)) differs from a loop, or raised
    "jacrev",  # jacrev(fn) differs from torch's Jacobian, or raised
)
# The exception types of funcloss's error template (funcloss/_checks.py): where torch's sample
# expects its generic RuntimeError, one of these is funcloss's equivalent.
HOUSE_ERRORS = (TypeError, ValueError, IndexError)
_VMAP_COPIES = 2  # the sample and a perturbed copy: a batch that mixes rows shows

# The README's "Where funcloss deliberately differs from torch" entries that change how a case
# is checked (never whether): name -> the README's wording and what the harness does instead.
DELIBERATE = {
    "ctc-gradient": (
        "`ctc_loss`'s gradient with respect to `log_probs` is the true derivative (torch's is off "
        "by `exp(log_probs)` unless chained through `log_softmax`)",
        "gradients, vmap(grad) and jacrev w.r.t. log_probs are compared with central differences "
        "of torch's float64 forward instead of torch's backward",
    ),
    "error-types": (
        "errors are funcloss's own: `TypeError` (kind or dtype), `ValueError` (shape or "
        "configuration) or `IndexError` (class index) where torch raises its generic "
        "`RuntimeError`",
        "an error sample expecting RuntimeError passes with one of these",
    ),
    "lce-options": (
        "`linear_cross_entropy` honours `options=` in every call, so it does not warn where "
        "torch's ignores it",
        'torch\'s warning "``options`` ignored; chunked path needs ..." (probability targets, '
        "K-dimensional outputs, label smoothing) is not expected from funcloss",
    ),
    "legacy-arguments": (
        "the legacy `size_average` and `reduce` arguments are not accepted",
        "samples passing them are called with torch's own mapping to `reduction` "
        "(torch.nn._reduction.legacy_get_string); a sample whose explicit `reduction` contradicts "
        "it would be counted as this difference (torch 2.13's samples have none)",
    ),
}


@dataclass
class Case:
    """One call of a loss, as two functions of the same tensor leaves (torch's and funcloss's)."""

    id: str
    loss: str  # funcloss's function name
    source: str  # "opinfo", "opinfo-error", "criterion", "new_module"
    dtype: torch.dtype | None
    leaves: list[Any]  # tensors (and other leaves) the calls take, in order
    torch_call: Callable[..., Tensor]
    fl_call: Callable[..., Tensor]
    # positions in ``leaves`` of floating tensors whose gradient torch's sample asks for
    wrt: tuple[int, ...] = ()
    # module forms: (torch module call, funcloss module call, both of the leaves), or None
    torch_module_call: Callable[..., Tensor] | None = None
    fl_module_call: Callable[..., Tensor] | None = None
    module_note: str = ""  # why there is no module check, when there is none
    error_type: type[BaseException] | None = None  # for error inputs
    error_regex: str = ""
    legacy: str = ""  # how legacy size_average/reduce were handled ("" when absent)
    # positions in ``wrt`` whose gradient torch's backward gets wrong by design (DELIBERATE):
    # checked against central differences of torch's float64 forward instead
    fd_wrt: tuple[int, ...] = ()
    # values, warnings and gradients only (no vmap, no jacrev): see module_db_cases
    light: bool = False
    description: str = ""

    @property
    def is_error(self) -> bool:
        return self.error_type is not None


@dataclass
class Result:
    case: Case
    failures: dict[str, str] = field(default_factory=dict)  # category -> message
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


# --------------------------------------------------------------------------------- utilities


def _is_float(x: Any) -> bool:
    return isinstance(x, Tensor) and (x.is_floating_point() or x.is_complex())


def _describe(x: Any) -> str:
    if isinstance(x, Tensor):
        kind = str(x.dtype).removeprefix("torch.")
        return f"{kind}{tuple(x.shape)}"
    if isinstance(x, (list, tuple)) and len(x) > 4:
        return f"{type(x).__name__}[{len(x)}]"
    if callable(x):
        return getattr(x, "__name__", type(x).__name__)
    return repr(x)


def _fresh(leaves: list[Any], wrt: tuple[int, ...], dtype: torch.dtype | None = None) -> list:
    """Detached copies of the leaves; those in ``wrt`` require grad; floats cast to ``dtype``."""
    out = []
    for i, x in enumerate(leaves):
        if isinstance(x, Tensor):
            x = x.detach().clone()
            if dtype is not None and x.is_floating_point():
                x = x.to(dtype)
            x.requires_grad_(i in wrt)
        out.append(x)
    return out


@contextlib.contextmanager
def _recorded_warnings() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


# torch warnings that funcloss deliberately does not give: the part of the message to match and
# the reason. torch's warning for legacy arguments, which the harness maps to ``reduction`` for
# funcloss; and torch's linear_cross_entropy ignoring ``options`` (DELIBERATE["lce-options"]).
_NOT_GIVEN_WARNINGS = {
    "size_average and reduce args will be deprecated": "legacy-arguments",
    "``options`` ignored; chunked path needs": "lce-options",
}


def _user_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [
        str(w.message)
        for w in caught
        if issubclass(w.category, UserWarning)
        and not issubclass(w.category, DeprecationWarning)
        and not any(part in str(w.message) for part in _NOT_GIVEN_WARNINGS)
    ]


@contextlib.contextmanager
def _no_vmap_fallback() -> Iterator[None]:
    functorch: Any = torch._C._functorch
    enabled = functorch._is_vmap_fallback_enabled()
    functorch._set_vmap_fallback_enabled(False)
    try:
        yield
    finally:
        functorch._set_vmap_fallback_enabled(enabled)


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(error).__name__}: {first[:240]}"


def _raised_in_test_code(error: BaseException) -> bool:
    """Whether ``error`` comes from torch's test code itself (common_nn's wrapper lambdas read
    ``i.data``, which no transform allows), not from a loss."""
    tb = error.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    return last is not None and last.endswith("common_nn.py")


def _max_error(a: Tensor, b: Tensor) -> float:
    a, b = a.detach().to(torch.float64), b.detach().to(torch.float64)
    both_nan = a.isnan() & b.isnan()
    same_inf = a.isinf() & (a == b)
    diff = (a - b).abs().masked_fill(both_nan | same_inf, 0)
    return float(diff.nan_to_num(nan=float("inf")).max()) if diff.numel() else 0.0


def _close(actual: Any, expected: Any, reference64: Callable[[], Any] | None) -> str | None:
    """None when ``actual`` matches ``expected`` (assert_close, or the float32 rule), else why."""
    a_flat, a_spec = pytree.tree_flatten(actual)
    e_flat, e_spec = pytree.tree_flatten(expected)
    if a_spec != e_spec or len(a_flat) != len(e_flat):
        return f"structure differs: {a_spec} vs {e_spec}"
    bad = []
    for k, (a, e) in enumerate(zip(a_flat, e_flat, strict=True)):
        if e is None:
            e = torch.zeros_like(a) if isinstance(a, Tensor) else a
        if a is None:
            a = torch.zeros_like(e) if isinstance(e, Tensor) else e
        if not isinstance(a, Tensor) or not isinstance(e, Tensor):
            if a != e:
                bad.append(k)
            continue
        if a.shape != e.shape:
            return f"shape {tuple(a.shape)}, torch {tuple(e.shape)}"
        try:
            torch.testing.assert_close(a.detach(), e.detach(), equal_nan=True, check_dtype=False)
        except AssertionError:
            bad.append(k)
    if not bad:
        return None
    ref = None
    if reference64 is not None:
        try:
            ref = pytree.tree_flatten(reference64())[0]
        except Exception:
            ref = None
    messages = []
    for k in bad:
        a, e = a_flat[k], e_flat[k]
        a = torch.zeros_like(e) if a is None else a
        e = torch.zeros_like(a) if e is None else e
        err = _max_error(a, e)
        if ref is not None and a.dtype != torch.float64 and ref[k] is not None:
            ours, theirs = _max_error(a, ref[k]), _max_error(e, ref[k])
            if ours <= 2 * theirs:
                continue
            messages.append(
                f"[{k}] max |funcloss - torch| = {err:.3g}; vs float64 torch: funcloss "
                f"{ours:.3g}, torch {theirs:.3g}"
            )
        else:
            messages.append(f"[{k}] max |funcloss - torch| = {err:.3g}")
    return "; ".join(messages) or None


def _grads(call: Callable[..., Any], leaves: list[Any], wrt: tuple[int, ...], seed: int) -> list:
    """Gradients of ``<call(*leaves), v>`` w.r.t. the leaves in ``wrt`` (v: a fixed cotangent)."""
    out = call(*leaves)
    outs = [o for o in pytree.tree_flatten(out)[0] if _is_float(o) and o.requires_grad]
    if not outs:
        return [None] * len(wrt)
    gen = torch.Generator().manual_seed(seed)
    cots = [torch.rand(o.shape, generator=gen, dtype=torch.float64).to(o.dtype) + 0.5 for o in outs]
    inputs = [leaves[i] for i in wrt]
    return list(torch.autograd.grad(outs, inputs, cots, allow_unused=True))


# ------------------------------------------------------------------------------- the checks


def _torch_grad_positions(case: Case) -> tuple[int, ...]:
    """The positions of ``case.wrt`` that torch's own backward supports."""
    try:
        _grads(case.torch_call, _fresh(case.leaves, case.wrt), case.wrt, 0)
        return case.wrt
    except Exception:
        pass
    keep = []
    for i in case.wrt:
        try:
            _grads(case.torch_call, _fresh(case.leaves, (i,)), (i,), 0)
            keep.append(i)
        except Exception:
            continue
    return tuple(keep)


def check(case: Case) -> Result:
    """Run every check on ``case`` (warnings outside the compared calls are ignored)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _check(case)


def _check(case: Case) -> Result:
    result = Result(case)
    torch.manual_seed(0)
    if case.is_error:
        _check_error(case, result)
        return result
    fails = result.failures
    leaves = _fresh(case.leaves, ())
    with _recorded_warnings() as torch_caught:
        try:
            expected = case.torch_call(*leaves)
        except Exception as error:
            result.notes.append(f"torch raises: {_short(error)}")
            return result
    with _recorded_warnings() as fl_caught:
        try:
            actual = case.fl_call(*_fresh(case.leaves, ()))
        except Exception as error:
            fails["call"] = _short(error)
            return result

    def reference64() -> Any:
        return case.torch_call(*_fresh(case.leaves, (), torch.float64))

    why = _close(actual, expected, reference64)
    if why:
        fails["value"] = why
    a_dt = [x.dtype for x in pytree.tree_flatten(actual)[0] if isinstance(x, Tensor)]
    e_dt = [x.dtype for x in pytree.tree_flatten(expected)[0] if isinstance(x, Tensor)]
    if a_dt != e_dt:
        fails["dtype"] = f"funcloss {a_dt}, torch {e_dt}"
    tw, fw = _user_warnings(torch_caught), _user_warnings(fl_caught)
    if bool(tw) != bool(fw):
        fails["warning"] = f"torch warns {tw[:1]}, funcloss warns {fw[:1]}"

    wrt = _torch_grad_positions(case)
    if wrt != case.wrt:
        result.notes.append(f"torch cannot differentiate w.r.t. leaves {set(case.wrt) - set(wrt)}")
    if wrt:
        _check_grad(case, wrt, result)
    _check_module(case, expected, reference64, result)
    if case.light:
        return result
    _check_vmap(case, wrt, result)
    real = tuple(i for i in wrt if not case.leaves[i].is_complex())
    if real != wrt:
        result.notes.append("no jacrev check w.r.t. complex leaves: torch.func.jacrev takes reals")
    if real:
        _check_jacrev(case, real, result)
    return result


def _check_error(case: Case, result: Result) -> None:
    leaves = _fresh(case.leaves, ())
    try:
        with _recorded_warnings():
            case.fl_call(*leaves)
    except Exception as error:
        assert case.error_type is not None
        if not str(error).startswith(f"{case.loss}: "):
            result.failures["error-message"] = f"not funcloss's template: {_short(error)}"
        if isinstance(error, case.error_type):
            return
        if case.error_type is RuntimeError and isinstance(error, HOUSE_ERRORS):
            result.notes.append(f"torch: RuntimeError, funcloss: {type(error).__name__}")
            return
        result.failures["error-type"] = (
            f"torch's sample expects {case.error_type.__name__} ({case.error_regex!r}), "
            f"funcloss raises {_short(error)}"
        )
        return
    result.failures["error"] = (
        f"funcloss does not raise; torch raises {case.error_type.__name__}: {case.error_regex!r}"
    )


def _check_grad(case: Case, wrt: tuple[int, ...], result: Result) -> None:
    by_torch = tuple(i for i in wrt if i not in case.fd_wrt)
    by_fd = tuple(i for i in wrt if i in case.fd_wrt)
    if by_fd:
        try:
            why = _fd_grad_mismatch(case, by_fd)
        except Exception as error:
            why = f"backward raised {_short(error)}"
        if why:
            result.failures["grad"] = f"w.r.t. leaves {by_fd} (central differences): {why}"
    if not by_torch:
        return
    expected = _grads(case.torch_call, _fresh(case.leaves, by_torch), by_torch, 1)
    try:
        actual = _grads(case.fl_call, _fresh(case.leaves, by_torch), by_torch, 1)
    except Exception as error:
        result.failures["grad"] = f"backward raised {_short(error)}"
        return

    def reference64() -> Any:
        return _grads(case.torch_call, _fresh(case.leaves, by_torch, torch.float64), by_torch, 1)

    why = _close(actual, expected, reference64)
    if why:
        result.failures["grad"] = f"w.r.t. leaves {by_torch}: {why}"


_FD_EPS = 1e-6


def _fd_setup(case: Case, positions: tuple[int, ...]) -> tuple[list, Tensor, Tensor, list]:
    """torch's float64 leaves, its output there, the mask of finite outputs and directions."""
    leaves64 = _fresh(case.leaves, (), torch.float64)
    base = case.torch_call(*leaves64).detach()
    gen = torch.Generator().manual_seed(2)
    directions = [
        torch.randn(leaves64[i].shape, generator=gen, dtype=torch.float64) for i in positions
    ]
    return leaves64, base, base.isfinite(), directions


def _fd_derivative(
    case: Case, leaves64: list, positions: tuple[int, ...], directions: list, finite: Tensor
) -> Tensor:
    """Central difference of torch's float64 forward along ``directions`` (finite outputs)."""

    def at(t: float) -> Tensor:
        xs = list(leaves64)
        for i, d in zip(positions, directions, strict=True):
            xs[i] = leaves64[i] + t * d
        return case.torch_call(*xs).detach().where(finite, 0)

    return (at(_FD_EPS) - at(-_FD_EPS)) / (2 * _FD_EPS)


def _fd_tolerance(dtype: torch.dtype) -> float:
    return 1e-6 if dtype == torch.float64 else 1e-4


def _fd_grad_mismatch(case: Case, positions: tuple[int, ...]) -> str | None:
    """funcloss's vector-Jacobian product against torch's forward by central differences."""
    leaves64, base, finite, directions = _fd_setup(case, positions)
    leaves = _fresh(case.leaves, positions)
    out = case.fl_call(*leaves)
    gen = torch.Generator().manual_seed(1)
    v = (torch.rand(base.shape, generator=gen, dtype=torch.float64) + 0.5) * finite
    grads = torch.autograd.grad(out, [leaves[i] for i in positions], v.to(out.dtype))
    terms = [(g.double() * d) for g, d in zip(grads, directions, strict=True)]
    predicted = sum(t.sum() for t in terms)
    scale = sum(t.abs().sum() for t in terms) + 1e-12
    fd = (_fd_derivative(case, leaves64, positions, directions, finite) * v).sum()
    error = float((predicted - fd).abs())
    if not error <= _fd_tolerance(out.dtype) * float(scale):
        return f"directional derivative {float(predicted):.6g}, central difference {float(fd):.6g}"
    return None


def _check_module(case: Case, expected: Any, reference64: Callable, result: Result) -> None:
    if case.torch_module_call is None or case.fl_module_call is None:
        if case.module_note:
            result.notes.append(f"no module check: {case.module_note}")
        return
    try:
        with _recorded_warnings():
            want = case.torch_module_call(*_fresh(case.leaves, ()))
    except Exception as error:
        result.notes.append(f"torch's module raises: {_short(error)}")
        return
    try:
        with _recorded_warnings():
            got = case.fl_module_call(*_fresh(case.leaves, ()))
    except Exception as error:
        result.failures["module"] = _short(error)
        return
    why = _close(got, want, reference64)
    if why:
        result.failures["module"] = why


def _batched_leaves(case: Case) -> tuple[list[Any], list[list[Any]]]:
    """``_VMAP_COPIES`` perturbed copies of the sample, stacked; and the copies themselves."""
    copies = []
    for k in range(_VMAP_COPIES):
        copy = []
        for x in _fresh(case.leaves, ()):
            if isinstance(x, Tensor) and x.is_floating_point():
                x = x * (1 - 0.05 * k)  # keeps signs, [0, 1] and positivity
            copy.append(x)
        copies.append(copy)
    batched = []
    for i, x in enumerate(case.leaves):
        if isinstance(x, Tensor):
            batched.append(torch.stack([c[i] for c in copies]))
        else:
            batched.append(x)
    return batched, copies


def _check_vmap(case: Case, wrt: tuple[int, ...], result: Result) -> None:
    tensors = [i for i, x in enumerate(case.leaves) if isinstance(x, Tensor)]
    if not tensors:
        return
    batched, copies = _batched_leaves(case)
    in_dims = tuple(0 if isinstance(x, Tensor) else None for x in case.leaves)
    try:
        with _recorded_warnings():
            loop = [case.fl_call(*c) for c in copies]
    except Exception as error:
        result.notes.append(f"no vmap check: a perturbed copy raises {_short(error)}")
        return
    want = pytree.tree_map(lambda *xs: torch.stack(xs), *loop) if len(loop) > 1 else loop
    try:
        with _recorded_warnings(), _no_vmap_fallback():
            got = vmap(case.fl_call, in_dims=in_dims)(*batched)
    except Exception as error:
        if _raised_in_test_code(error):
            result.notes.append(f"no vmap(fn) check: the test function raises {_short(error)}")
        else:
            result.failures["vmap"] = f"vmap(fn) raised {_short(error)}"
        return
    why = _close(got, want, None)
    if why:
        result.failures["vmap"] = f"vmap(fn) vs a loop: {why}"
        return
    if not wrt:
        return
    # vmap(grad(sum fn)) against a loop of torch.autograd.grad on torch's op; where torch's
    # backward is wrong by design (DELIBERATE), on funcloss's eager backward, itself checked
    # against central differences of torch's forward
    call = case.fl_call if case.fd_wrt else case.torch_call
    try:
        expected = []
        for c in copies:
            c = _fresh(c, wrt)
            out = call(*c)
            expected.append(torch.autograd.grad(out.sum(), [c[i] for i in wrt], allow_unused=True))
    except Exception as error:
        result.notes.append(f"no vmap(grad) check: torch's backward raises {_short(error)}")
        return

    def total(*leaves: Any) -> Tensor:
        return case.fl_call(*leaves).sum()

    try:
        with _recorded_warnings(), _no_vmap_fallback():
            got = vmap(grad(total, argnums=wrt), in_dims=in_dims)(*batched)
    except Exception as error:
        if _raised_in_test_code(error):
            result.notes.append(f"no vmap(grad) check: the test function raises {_short(error)}")
        else:
            result.failures["vmap"] = f"vmap(grad(fn)) raised {_short(error)}"
        return
    want = [
        torch.stack(
            [e[j] if e[j] is not None else torch.zeros_like(copies[0][i]) for e in expected]
        )
        for j, i in enumerate(wrt)
    ]
    why = _close(list(got), want, None)
    if why:
        result.failures["vmap"] = f"vmap(grad(fn)) vs a loop of torch.autograd.grad: {why}"


def _torch_jacobian(case: Case, leaves: list[Any], wrt: tuple[int, ...]) -> Any:
    """torch's Jacobian: jacrev of torch's op, or a loop of torch.autograd.grad where that fails."""

    def f(*xs: Tensor) -> Tensor:
        full = list(leaves)
        for i, x in zip(wrt, xs, strict=True):
            full[i] = x
        return case.torch_call(*full)

    xs = tuple(leaves[i].detach() for i in wrt)
    try:
        with _recorded_warnings():
            return jacrev(f, argnums=tuple(range(len(wrt))))(*xs)
    except Exception:
        with _recorded_warnings():
            return torch.autograd.functional.jacobian(f, xs, vectorize=False)


def _check_jacrev(case: Case, wrt: tuple[int, ...], result: Result) -> None:
    leaves = _fresh(case.leaves, ())

    def f(*xs: Tensor) -> Tensor:
        full = list(leaves)
        for i, x in zip(wrt, xs, strict=True):
            full[i] = x
        return case.fl_call(*full)

    try:
        with _recorded_warnings():
            got = jacrev(f, argnums=tuple(range(len(wrt))))(*(leaves[i] for i in wrt))
    except Exception as error:
        if _raised_in_test_code(error):
            result.notes.append(f"no jacrev(fn) check: the test function raises {_short(error)}")
        else:
            result.failures["jacrev"] = f"jacrev(fn) raised {_short(error)}"
        return
    if case.fd_wrt:
        why = _fd_jacobian_mismatch(case, wrt, tuple(got))
        if why:
            result.failures["jacrev"] = f"jacrev(fn) vs central differences: {why}"
        return
    try:
        expected = _torch_jacobian(case, leaves, wrt)
    except Exception as error:
        result.notes.append(f"no jacrev check: torch's Jacobian raises {_short(error)}")
        return

    def reference64() -> Any:
        return _torch_jacobian(case, _fresh(case.leaves, (), torch.float64), wrt)

    why = _close(tuple(got), tuple(expected), reference64)
    if why:
        result.failures["jacrev"] = why


def _fd_jacobian_mismatch(case: Case, wrt: tuple[int, ...], jacobians: tuple) -> str | None:
    """Each output's directional derivative from ``jacobians`` against central differences."""
    leaves64, base, finite, directions = _fd_setup(case, wrt)
    n_out = base.numel()
    terms = [
        (j.double().reshape(n_out, -1) * d.reshape(1, -1))
        for j, d in zip(jacobians, directions, strict=True)
    ]
    predicted = sum(t.sum(-1) for t in terms).where(finite.reshape(-1), 0)
    scale = sum(t.abs().sum(-1) for t in terms) + 1e-12
    fd = _fd_derivative(case, leaves64, wrt, directions, finite).reshape(-1)
    error = (predicted - fd).abs()
    if not bool((error <= _fd_tolerance(jacobians[0].dtype) * scale).all()):
        k = int((error / scale).argmax())
        return f"output {k}: J·d = {float(predicted[k]):.6g}, central difference {float(fd[k]):.6g}"
    return None


# ------------------------------------------------------------------------ OpInfo samples


@contextlib.contextmanager
def _torch_test_imports() -> Iterator[None]:
    """Import from ``torch.testing._internal`` without its process-wide side effects, which
    would reach every later test of the suite: common_utils loads its own Hypothesis profile
    ("pytorch_ci" under CI: 50 examples and a deadline), freezes the ``torch.backends`` flags
    (``disable_global_flags``) and patches ``ScriptFunction.__call__``."""
    import torch.backends as backends

    flags = backends.flags_frozen.__globals__  # the module's own namespace
    flag = "__allow_nonbracketed_mutation_flag"
    saved_flag = flags[flag]
    saved_calls = torch._C.ScriptFunction.__call__, torch._C.ScriptMethod.__call__
    try:
        from hypothesis import settings
    except ImportError:  # the harness runs without hypothesis too
        settings = None
    profile = getattr(settings, "_current_profile", None)
    try:
        yield
    finally:
        flags[flag] = saved_flag
        torch._C.ScriptFunction.__call__, torch._C.ScriptMethod.__call__ = saved_calls
        if settings is not None and profile is not None:
            settings.load_profile(profile)


LOSS_OPINFO = re.compile(r"^nn\.functional\.(.*(loss|entropy.*)|kl_div)$")


def loss_opinfos() -> list[Any]:
    """Every ``nn.functional.*`` loss OpInfo of torch's ``op_db``."""
    with _torch_test_imports():
        from torch.testing._internal.common_methods_invocations import op_db

    return [op for op in op_db if LOSS_OPINFO.match(op.name)]


def _fl_function(name: str) -> Callable[..., Tensor]:
    return getattr(funcloss, name)


def _fl_module_class(fn: Callable[..., Tensor]) -> type | None:
    for name in fnn.__all__:
        cls = getattr(fnn, name)
        if getattr(cls, "_fn", None) is fn:
            return cls
    return None


def _bind(torch_fn: Callable, args: tuple, kwargs: dict) -> inspect.BoundArguments:
    return inspect.signature(torch_fn).bind(*args, **kwargs)


def _split_for(fl_fn: Callable, named: dict[str, Any], n_positional: int) -> tuple[list, dict]:
    """funcloss's call: the sample's positional arguments that funcloss takes positionally stay
    positional, every other argument is passed by keyword."""
    params = list(inspect.signature(fl_fn).parameters.values())
    positional_names = [
        p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    args, kwargs = [], {}
    for k, (name, value) in enumerate(named.items()):
        if k < n_positional and k < len(positional_names) and positional_names[k] == name:
            args.append(value)
        else:
            kwargs[name] = value
    return args, kwargs


@functools.cache
def torch_style(loss: str) -> Callable[..., Tensor]:
    """funcloss's ``loss`` called the way torch's is: the call is bound to torch's signature,
    legacy arguments mapped to ``reduction`` (:func:`_map_legacy`), the positional arguments
    that funcloss takes positionally passed positionally and the others by keyword."""
    torch_fn = getattr(torch.nn.functional, loss)
    fl_fn = _fl_function(loss)

    @functools.wraps(fl_fn)
    def call(*args: Any, **kwargs: Any) -> Tensor:
        named = dict(_bind(torch_fn, args, kwargs).arguments)
        named, _ = _map_legacy(named)
        fl_args, fl_kwargs = _split_for(fl_fn, named, len(args))
        return fl_fn(*fl_args, **fl_kwargs)

    return call


def _map_legacy(named: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Legacy size_average/reduce mapped to ``reduction`` by torch's rule, where unambiguous."""
    given = {k: named.pop(k) for k in LEGACY if k in named}
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return named, ""
    from torch.nn import _reduction

    mapped = _reduction.legacy_get_string(given.get("size_average"), given.get("reduce"), False)
    if "reduction" in named and named["reduction"] != mapped:
        return named, f"ambiguous: {given} with reduction={named['reduction']!r}"
    named["reduction"] = mapped
    return named, f"mapped {given} to reduction={mapped!r}"


def _module_calls_for(
    loss: str, torch_fn: Callable, named_of: Callable[[list[Any]], dict[str, Any]], probe: list
) -> tuple[Callable | None, Callable | None, str]:
    fl_cls = _fl_module_class(_fl_function(loss))
    if fl_cls is None:
        return None, None, "funcloss.nn has no module for it"
    torch_cls = getattr(torch.nn, fl_cls.__name__, None)
    if torch_cls is None:
        return None, None, f"torch.nn has no {fl_cls.__name__}"
    if loss == "linear_cross_entropy":
        return _linear_ce_module_calls(torch_cls, fl_cls, named_of)
    forward = [p for p in inspect.signature(torch_cls.forward).parameters if p != "self"]
    init = set(inspect.signature(torch_cls.__init__).parameters) - {"self"}
    fwd_names = list(inspect.signature(torch_fn).parameters)[: len(forward)]
    named = named_of(probe)
    missing = [n for n in fwd_names if n not in named]
    ctor_names = [n for n in named if n not in fwd_names]
    extra = [n for n in ctor_names if n not in init]
    if missing or extra:
        return None, None, f"the call does not split into forward {fwd_names} and constructor"

    def make(cls: type) -> Callable[..., Tensor]:
        def call(*leaves: Any) -> Tensor:
            named = named_of(list(leaves))
            fwd = [named.pop(n) for n in fwd_names]
            return cls(**named)(*fwd)

        return call

    return make(torch_cls), make(fl_cls), ""


def _linear_ce_module_calls(
    torch_cls: type, fl_cls: type, named_of: Callable[[list[Any]], dict[str, Any]]
) -> tuple[Callable | None, Callable | None, str]:
    """torch's LinearCrossEntropyLoss owns its linear layer: build both classes from the
    sample's weight shape and load the sample's weight (and bias) into them."""

    def make(cls: type) -> Callable[..., Tensor]:
        def call(*leaves: Any) -> Tensor:
            named = named_of(list(leaves))
            input, w, target = named.pop("input"), named.pop("linear_weight"), named.pop("target")
            b = named.pop("linear_bias", None)
            module = cls(
                w.shape[-1],
                w.shape[0],
                out_features=tuple(w.shape[1:-1]),
                bias=b is not None,
                dtype=w.dtype,
                **named,
            )
            params = {"linear.weight": w} | ({"linear.bias": b} if b is not None else {})
            return torch.func.functional_call(module, params, (input, target))

        return call

    return make(torch_cls), make(fl_cls), ""


def _opinfo_case(
    op: Any, loss: str, sample: Any, case_id: str, dtype: torch.dtype | None, error: Any = None
) -> Case:
    torch_fn = op.op
    structure = (sample.input, tuple(sample.args), dict(sample.kwargs))
    leaves, spec = pytree.tree_flatten(structure)
    legacy_note = ""
    process = sample.output_process_fn_grad

    def rebuild(leaves: list[Any]) -> tuple[Any, tuple, dict]:
        return pytree.tree_unflatten(list(leaves), spec)

    def torch_call(*leaves: Any) -> Tensor:
        input, args, kwargs = rebuild(list(leaves))
        return process(torch_fn(input, *args, **kwargs))

    def named_of(leaves: list[Any]) -> dict[str, Any]:
        input, args, kwargs = rebuild(leaves)
        named = dict(_bind(torch_fn, (input, *args), kwargs).arguments)
        named, _ = _map_legacy(named)
        return named

    try:
        _, legacy_note = _map_legacy(
            dict(_bind(torch_fn, (sample.input, *sample.args), sample.kwargs).arguments)
        )
    except TypeError:
        legacy_note = ""

    adapted = torch_style(loss)

    def fl_call(*leaves: Any) -> Tensor:
        input, args, kwargs = rebuild(list(leaves))
        return process(adapted(input, *args, **kwargs))

    wrt = tuple(
        i for i, x in enumerate(leaves) if _is_float(x) and x.requires_grad and error is None
    )
    # leaf 0 is the sample's input: ctc_loss's log_probs
    fd_wrt = (0,) if loss == "ctc_loss" and 0 in wrt else ()
    description = ", ".join(
        [_describe(sample.input), *map(_describe, sample.args)]
        + [f"{k}={_describe(v)}" for k, v in sample.kwargs.items()]
    )
    case = Case(
        id=case_id,
        loss=loss,
        source="opinfo-error" if error is not None else "opinfo",
        dtype=dtype,
        leaves=[x.detach() if isinstance(x, Tensor) else x for x in leaves],
        torch_call=torch_call,
        fl_call=fl_call,
        wrt=wrt,
        fd_wrt=fd_wrt,
        legacy=legacy_note,
        description=description,
    )
    if error is not None:
        case.error_type = error.error_type
        case.error_regex = str(error.error_regex)
        return case
    if legacy_note.startswith("ambiguous"):
        return case
    try:
        t_mod, f_mod, note = _module_calls_for(loss, torch_fn, named_of, case.leaves)
    except Exception as exc:
        t_mod, f_mod, note = None, None, f"cannot split the call: {_short(exc)}"
    case.torch_module_call, case.fl_module_call, case.module_note = t_mod, f_mod, note
    return case


def opinfo_cases() -> list[Case]:
    cases = []
    for op in loss_opinfos():
        loss = op.name.removeprefix("nn.functional.")
        variant = f".{op.variant_test_name}" if op.variant_test_name else ""
        for dtype in DTYPES:
            if dtype not in op.dtypes:
                continue
            torch.manual_seed(0)
            samples = list(op.reference_inputs("cpu", dtype, requires_grad=op.supports_autograd))
            for k, sample in enumerate(samples):
                case_id = f"{loss}{variant}-{_DTYPE_NAMES[dtype]}-{k}"
                cases.append(_opinfo_case(op, loss, sample, case_id, dtype))
        if op.error_inputs_func is not None:
            torch.manual_seed(0)
            for k, error in enumerate(op.error_inputs("cpu")):
                case_id = f"{loss}{variant}-error-{k}"
                cases.append(_opinfo_case(op, loss, error.sample_input, case_id, None, error))
    return cases


# ------------------------------------------------------------------- common_nn criterion tests


class _Redirect:
    """A namespace that answers with funcloss's attribute where funcloss has one."""

    def __init__(self, torch_ns: Any, fl_ns: Any, used: list[str]) -> None:
        self._torch, self._fl, self._used = torch_ns, fl_ns, used

    def __getattr__(self, name: str) -> Any:
        if name in getattr(self._fl, "__all__", ()) and hasattr(self._torch, name):
            self._used.append(name)
            if self._fl is funcloss:
                return torch_style(name)
            return getattr(self._fl, name)
        return getattr(self._torch, name)


@contextlib.contextmanager
def _funcloss_in_common_nn(used: list[str]) -> Iterator[None]:
    """Make common_nn's ``F`` and ``nn`` resolve losses to funcloss's."""
    from torch.testing._internal import common_nn

    saved = common_nn.F, common_nn.nn
    common_nn.F = _Redirect(torch.nn.functional, funcloss, used)
    common_nn.nn = _Redirect(torch.nn, fnn, used)
    try:
        yield
    finally:
        common_nn.F, common_nn.nn = saved


def _loss_of(used: list[str]) -> str:
    for name in used:
        cls = getattr(fnn, name, None)
        if isinstance(cls, type):
            return cls._fn.__name__
        return name
    return "?"


def _make_arg(test: dict, name: str) -> Any:
    if name in test:
        return test[name]
    if f"{name}_fn" in test:
        return test[f"{name}_fn"]()
    size = test[f"{name}_size"]

    def build(s: Any) -> Any:
        if isinstance(s, list):
            return [build(x) for x in s]
        return torch.randn(s)

    return build(size)


def _as_dtype(x: Any, dtype: torch.dtype) -> Any:
    def cast(t: Any) -> Any:
        if isinstance(t, Tensor) and t.is_floating_point():
            return t.detach().to(dtype)
        return t

    return pytree.tree_map(cast, x)


def criterion_cases() -> list[Case]:
    """common_nn's ``criterion_tests`` (module form) and the loss entries of
    ``get_new_module_tests()`` (functional calls in a wrapper module)."""
    with _torch_test_imports():
        from torch.testing._internal import common_nn

    cases = []
    for test in common_nn.criterion_tests:
        for dtype in DTYPES:
            cases.append(_criterion_case(test, dtype))
    for test in common_nn.get_new_module_tests():
        name = test.get("fullname") or test.get("module_name", "")
        if "loss" not in name.lower():
            continue
        for dtype in DTYPES:
            case = _new_module_case(test, dtype)
            tensors = [x for x in case.leaves if isinstance(x, Tensor)]
            if tensors and all(x.is_complex() for x in tensors):
                # a complex test (L1Loss_no_reduce_complex): one case, not one per real dtype
                case.id = case.id.rsplit("-", 1)[0] + "-complex"
                case.dtype = tensors[0].dtype
                if dtype != DTYPES[0]:
                    continue
            cases.append(case)
    return cases


def _criterion_case(test: dict, dtype: torch.dtype) -> Case:
    torch.manual_seed(0)
    name = test["fullname"]
    args = test.get("constructor_args", ())
    torch_module = test["constructor"](*args)
    used: list[str] = []
    try:
        with _funcloss_in_common_nn(used):
            fl_module = test["constructor"](*args)
    except Exception as error:
        fl_module = error
    if not used:
        fl_module = AssertionError(f"{name}: the constructor did not reach funcloss.nn")
    input = _as_dtype(_make_arg(test, "input"), dtype)
    target = _as_dtype(_make_arg(test, "target"), dtype)
    inputs = list(input) if isinstance(input, (tuple, list)) else [input]
    leaves = [*inputs, target]
    extra = tuple(test.get("extra_args", ()))

    def torch_call(*leaves: Any) -> Tensor:
        return torch_module(*leaves, *extra)

    def fl_call(*leaves: Any) -> Tensor:
        if isinstance(fl_module, Exception):
            raise fl_module
        return fl_module(*leaves, *extra)

    wrt = tuple(i for i, x in enumerate(inputs) if _is_float(x))
    loss = _loss_of(used) if used else type(torch_module).__name__
    return Case(
        id=f"criterion-{name}-{_DTYPE_NAMES[dtype]}",
        loss=loss,
        source="criterion",
        dtype=dtype,
        leaves=leaves,
        torch_call=torch_call,
        fl_call=fl_call,
        wrt=wrt,
        description=", ".join(map(_describe, leaves)) + f" ({torch_module!r})",
    )


def _not_reached(name: str) -> Callable[..., Tensor]:
    def call(*leaves: Any) -> Tensor:
        raise AssertionError(f"{name}: the test's function did not reach funcloss")

    return call


def _new_module_case(test: dict, dtype: torch.dtype) -> Case:
    torch.manual_seed(0)
    name = test.get("fullname") or test["module_name"]
    args = test.get("constructor_args", ())
    module = test["constructor"](*args)
    input = _as_dtype(_make_arg(test, "input"), dtype)
    leaves = list(input) if isinstance(input, (tuple, list)) else [input]
    used: list[str] = []

    def torch_call(*leaves: Any) -> Tensor:
        return module(*leaves)

    def fl_call(*leaves: Any) -> Tensor:
        with _funcloss_in_common_nn(used):
            return module(*leaves)

    with contextlib.suppress(Exception), _recorded_warnings():
        fl_call(*_fresh(leaves, ()))
    if not used:
        fl_call = _not_reached(name)
    loss = _loss_of(used) if used else name.split("_")[0]
    wrt = tuple(i for i, x in enumerate(leaves) if _is_float(x))
    return Case(
        id=f"new_module-{name}-{_DTYPE_NAMES[dtype]}",
        loss=loss,
        source="new_module",
        dtype=dtype,
        leaves=leaves,
        torch_call=torch_call,
        fl_call=fl_call,
        wrt=wrt,
        description=", ".join(map(_describe, leaves)),
    )


# ----------------------------------------------------------- common_modules' module inputs


def module_db_cases() -> list[Case]:
    """The loss ModuleInfos of ``torch.testing._internal.common_modules.module_db`` (the
    new-style module tests): each module input in float32 and float64, funcloss.nn's class with
    the same constructor arguments (and torch's module's state, for a module with parameters).

    They are checked for values, dtype, warnings and gradients (``light``): module forms are what
    they add; vmap and jacrev of the same calls are covered by the functions' OpInfo samples, and
    through every check LinearCrossEntropyLoss's 857 inputs per dtype (its constructor's options
    crossed) alone would take 0.6 s each."""
    with _torch_test_imports():
        from torch.testing._internal.common_modules import module_db

    cases = []
    for info in module_db:
        name = info.module_cls.__name__
        if not name.endswith("Loss"):
            continue
        for dtype in DTYPES:
            torch.manual_seed(0)
            inputs = info.module_inputs_func(
                info, device="cpu", dtype=dtype, requires_grad=True, training=True
            )
            for k, module_input in enumerate(inputs):
                cases.append(_module_db_case(info, module_input, dtype, k))
    return cases


def _module_db_case(info: Any, module_input: Any, dtype: torch.dtype, k: int) -> Case:
    name = info.module_cls.__name__
    fl_cls = getattr(fnn, name, None)
    c_args, c_kwargs = module_input.constructor_input.args, module_input.constructor_input.kwargs
    structure = (tuple(module_input.forward_input.args), dict(module_input.forward_input.kwargs))
    leaves, spec = pytree.tree_flatten(structure)
    torch.manual_seed(0)
    torch_module = info.module_cls(*c_args, **c_kwargs)
    fl_module: Any
    try:
        if fl_cls is None:
            raise AttributeError(f"funcloss.nn has no {name}")
        fl_module = fl_cls(*c_args, **c_kwargs)
        if any(True for _ in torch_module.parameters()):
            fl_module.load_state_dict(torch_module.state_dict())
    except Exception as error:
        fl_module = error

    def torch_call(*leaves: Any) -> Tensor:
        args, kwargs = pytree.tree_unflatten(list(leaves), spec)
        return torch_module(*args, **kwargs)

    def fl_call(*leaves: Any) -> Tensor:
        if isinstance(fl_module, Exception):
            raise fl_module
        args, kwargs = pytree.tree_unflatten(list(leaves), spec)
        return fl_module(*args, **kwargs)

    wrt = tuple(i for i, x in enumerate(leaves) if _is_float(x) and x.requires_grad)
    loss = fl_cls._fn.__name__ if fl_cls is not None else name
    desc = f"-{module_input.desc}" if module_input.desc else ""
    ctor = ", ".join(
        [*map(_describe, c_args)] + [f"{k}={_describe(v)}" for k, v in c_kwargs.items()]
    )
    return Case(
        id=f"module_db-{name}-{_DTYPE_NAMES[dtype]}-{k}{desc}",
        loss=loss,
        source="module_db",
        dtype=dtype,
        leaves=[x.detach() if isinstance(x, Tensor) else x for x in leaves],
        torch_call=torch_call,
        fl_call=fl_call,
        wrt=wrt,
        fd_wrt=(0,) if loss == "ctc_loss" and 0 in wrt else (),
        light=True,
        description=", ".join(map(_describe, leaves)) + f" ({name}({ctor}))",
    )


@functools.cache
def all_cases() -> tuple[Case, ...]:
    return (*opinfo_cases(), *criterion_cases(), *module_db_cases())
