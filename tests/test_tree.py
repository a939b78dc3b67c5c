"""tree_loss and TreeLoss: weighted totals over pytrees, against torch.nn.functional by hand."""

from __future__ import annotations

import collections

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import functional_call, grad, jacrev, vmap

import funcloss
import funcloss.nn as fnn
from funcloss.testing import check_loss

from .helpers import assert_close

LOSSES = {"cls": funcloss.cross_entropy, "box": funcloss.smooth_l1_loss, "obj": funcloss.mse_loss}
TORCH = {"cls": F.cross_entropy, "box": F.smooth_l1_loss, "obj": F.mse_loss}


def _batch(n: int = 4, dtype: torch.dtype = torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = {
        "cls": torch.randn(n, 3, generator=g, dtype=dtype),
        "box": torch.randn(n, 2, generator=g, dtype=dtype),
        "obj": torch.randn(n, generator=g, dtype=dtype),
    }
    y = {
        "cls": torch.randint(0, 3, (n,), generator=g),
        "box": torch.randn(n, 2, generator=g, dtype=dtype),
        "obj": torch.randn(n, generator=g, dtype=dtype),
    }
    return x, y


weights_st = st.one_of(st.none(), st.floats(0.0, 3.0, allow_nan=False, width=32))


@settings(max_examples=25, deadline=None)
@given(
    weights=st.fixed_dictionaries({k: weights_st for k in LOSSES}),
    absent=st.sets(st.sampled_from(sorted(LOSSES))),
    reduction=st.sampled_from(["mean", "sum"]),
    seed=st.integers(0, 100),
)
def test_equals_hand_written_weighted_sum(weights, absent, reduction, seed) -> None:
    x, y = _batch(seed=seed)
    y = {k: None if k in absent else v for k, v in y.items()}
    total, terms = funcloss.tree_loss(
        LOSSES, x, y, weights=weights, reduction=reduction, return_terms=True
    )
    expected = torch.zeros(())
    for k, fn in TORCH.items():
        term = torch.zeros(()) if y[k] is None else fn(x[k], y[k], reduction=reduction)
        assert_close(terms[k], term)  # unweighted, 0 for an absent task
        expected = expected + (1.0 if weights[k] is None else weights[k]) * term
    assert_close(total, expected)
    assert list(terms) == list(x)  # the predictions' structure, key order included


def test_deep_supervision_broadcasts_one_loss_and_target() -> None:
    outputs = [torch.randn(5, 4) for _ in range(3)]
    labels = torch.randint(0, 4, (5,))
    total, terms = funcloss.tree_loss(
        funcloss.cross_entropy, outputs, labels, weights=[0.25, 0.5, 1.0], return_terms=True
    )
    expected = [F.cross_entropy(o, labels) for o in outputs]
    assert_close(torch.stack(terms), torch.stack(expected))
    assert_close(total, 0.25 * expected[0] + 0.5 * expected[1] + expected[2])


def test_where_is_passed_only_when_given() -> None:
    def plain_l1(input, target, reduction="mean"):  # a user loss without `where`
        return F.l1_loss(input, target, reduction=reduction)

    x, y = _batch()
    mask = torch.tensor([True, False, True, True])
    losses = {"cls": funcloss.cross_entropy, "box": plain_l1, "obj": funcloss.mse_loss}
    total = funcloss.tree_loss(losses, x, y, where={"cls": None, "box": None, "obj": mask})
    expected = (
        F.cross_entropy(x["cls"], y["cls"])
        + F.l1_loss(x["box"], y["box"])
        + F.mse_loss(x["obj"][mask], y["obj"][mask])  # masking equals slicing
    )
    assert_close(total, expected)


def test_non_bool_where_error_propagates() -> None:
    x, y = _batch()
    where = {"cls": None, "box": torch.ones(4, 2), "obj": None}
    with pytest.raises(TypeError, match=r"smooth_l1_loss: `where` must be a bool tensor"):
        funcloss.tree_loss(LOSSES, x, y, where=where)


def test_structure_errors_name_the_path() -> None:
    x, y = _batch()
    with pytest.raises(
        ValueError,
        match=r"tree_loss: `targets` must be a leaf or have the "
        r"structure of `predictions`, got different pytree keys.*\['obj'\]",
    ):
        funcloss.tree_loss(LOSSES, x, {"cls": y["cls"], "box": y["box"]})
    with pytest.raises(
        ValueError,
        match=r"tree_loss: `targets\['box'\]` must be a leaf or have "
        r"the structure of `predictions\['box'\]`, got different types",
    ):
        funcloss.tree_loss(LOSSES, x, {**y, "box": [y["box"], y["box"]]})
    nested = {"a": [torch.zeros(2), torch.zeros(2)]}
    with pytest.raises(
        ValueError,
        match=r"`loss\['a'\]` must .* `predictions\['a'\]`, got "
        r"different numbers of pytree children",
    ):
        funcloss.tree_loss({"a": [funcloss.mse_loss] * 3}, nested, torch.zeros(2))
    with pytest.raises(ValueError, match=r"`where\['a'\]` must .*different types.*tuple"):
        funcloss.tree_loss(funcloss.mse_loss, nested, torch.zeros(2), where={"a": (None, None)})


def test_weight_tree_errors() -> None:
    x, y = _batch()
    with pytest.raises(
        ValueError,
        match=r"tree_loss: `weights` must .*keys only in `weights`: "
        r"\['seg'\]",
    ):
        funcloss.tree_loss(LOSSES, x, y, weights={"cls": 1.0, "box": 1.0, "obj": 1.0, "seg": 1.0})
    with pytest.raises(
        ValueError,
        match=r"`weights\['box'\]` must be a number or a 0-dim tensor, "
        r"got \(2,\)",
    ):
        funcloss.tree_loss(LOSSES, x, y, weights={"cls": 1.0, "box": torch.ones(2), "obj": None})
    with pytest.raises(
        TypeError,
        match=r"`weights\['obj'\]` must be a number, a 0-dim tensor or "
        r"None, got str",
    ):
        funcloss.tree_loss(LOSSES, x, y, weights={"cls": 1.0, "box": 1.0, "obj": "1"})


def test_bad_loss_and_reduction() -> None:
    x, y = _batch()
    with pytest.raises(
        TypeError,
        match=r"tree_loss: `loss\['box'\]` must be a loss function, "
        r"got int",
    ):
        funcloss.tree_loss({**LOSSES, "box": 1}, x, y)
    with pytest.raises(
        ValueError,
        match=r"tree_loss: `reduction` must be one of 'mean' \| "
        r"'sum', got 'none'",
    ):
        funcloss.tree_loss(LOSSES, x, y, reduction="none")
    none_module = fnn.MSELoss(reduction="none")
    with pytest.raises(ValueError, match=r"`loss\['obj'\]` must return a 0-dim tensor"):
        funcloss.tree_loss({**LOSSES, "obj": none_module}, x, y)


def test_ordered_dict_against_dict_follows_optree() -> None:
    # optree accepts a dict prefix of an OrderedDict; so does tree_loss (its fallback path).
    x = collections.OrderedDict(b=torch.randn(3), a=torch.randn(3))
    y = {"a": torch.zeros(3), "b": torch.ones(3)}
    total = funcloss.tree_loss({"a": funcloss.mse_loss, "b": funcloss.l1_loss}, x, y)
    assert_close(total, F.mse_loss(x["a"], y["a"]) + F.l1_loss(x["b"], y["b"]))


class _Heads(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Linear(5, 4)
        self.cls = torch.nn.Linear(4, 3)
        self.box = torch.nn.Linear(4, 2)

    def forward(self, x):
        h = self.body(x).tanh()
        return {"cls": self.cls(h), "box": self.box(h)}


HEAD_LOSSES = {"cls": funcloss.cross_entropy, "box": funcloss.smooth_l1_loss}
HEAD_WEIGHTS = {"cls": 1.0, "box": 2.0}


def _head_data(n: int = 6):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 5, generator=g)
    y = {"cls": torch.randint(0, 3, (n,), generator=g), "box": torch.randn(n, 2, generator=g)}
    return x, y, torch.rand(n, 2, generator=g) > 0.3


def _objective(model, params, x, y, box_mask):
    out = functional_call(model, params, (x,))
    where = {"cls": None, "box": box_mask}
    return funcloss.tree_loss(HEAD_LOSSES, out, y, weights=HEAD_WEIGHTS, where=where)


def _torch_objective(model, x, y, box_mask):
    out = model(x)
    box = F.smooth_l1_loss(out["box"], y["box"], reduction="none")
    # funcloss's mean over the included elements; 0 when none is (torch's mean gives nan)
    included = box[box_mask].sum() / box_mask.sum().clamp_min(1)
    return F.cross_entropy(out["cls"], y["cls"]) + 2.0 * included


def test_grad_over_a_pytree_of_parameters() -> None:
    model = _Heads()
    x, y, mask = _head_data()
    params = dict(model.named_parameters())
    ours = grad(lambda p: _objective(model, p, x, y, mask))(params)
    theirs = torch.autograd.grad(_torch_objective(model, x, y, mask), list(params.values()))
    for name, expected in zip(params, theirs, strict=True):
        assert_close(ours[name], expected)


def _per_sample(model, params, x, y, mask):
    one = {k: v[None] for k, v in y.items()}
    return _objective(model, params, x[None], one, mask[None])


def test_vmap_gives_per_sample_totals_without_fallback() -> None:
    model = _Heads()
    x, y, mask = _head_data()
    params = dict(model.named_parameters())
    torch._C._functorch._set_vmap_fallback_enabled(False)
    try:
        totals = vmap(lambda *a: _per_sample(model, params, *a))(x, y, mask)
        grads = vmap(grad(lambda p, *a: _per_sample(model, p, *a)), in_dims=(None, 0, 0, 0))(
            params, x, y, mask
        )
    finally:
        torch._C._functorch._set_vmap_fallback_enabled(True)
    for i in range(len(x)):
        yi = {k: v[i : i + 1] for k, v in y.items()}
        assert_close(totals[i], _torch_objective(model, x[i : i + 1], yi, mask[i : i + 1]))
        expected = torch.autograd.grad(
            _torch_objective(model, x[i : i + 1], yi, mask[i : i + 1]), list(params.values())
        )
        for name, e in zip(params, expected, strict=True):
            # float32 parameters: vmap's batched matmul and the unbatched one round apart
            # (2e-8 on an AVX-512 CPU), so torch's float32 tolerance, not the float64 one
            torch.testing.assert_close(grads[name][i], e)


def test_jacrev_over_the_predictions_tree() -> None:
    x, y = _batch(dtype=torch.float64)
    weights = {"cls": 3.0, "box": None, "obj": None}
    jac = jacrev(lambda p: funcloss.tree_loss(LOSSES, p, y, weights=weights))(x)
    torch_total = sum(
        (3.0 if k == "cls" else 1.0) * TORCH[k](x[k].requires_grad_(), y[k]) for k in TORCH
    )
    expected = torch.autograd.grad(torch_total, [x[k] for k in x])
    for k, e in zip(x, expected, strict=True):
        assert_close(jac[k], e)


def test_compile_fullgraph() -> None:
    # A dict of functions and a dict of floats: constant trees, which Dynamo cannot flatten
    # itself on torch 2.13 with optree 0.20 (see funcloss/_tree.py).
    x, y = _batch()
    y["obj"] = None
    weights = {"cls": 2.0, "box": 0.5, "obj": None}

    where = {"cls": None, "box": torch.tensor([[True, False]] * 2 + [[False, False]] * 2)}
    where["obj"] = None

    def f(x, y):
        return funcloss.tree_loss(LOSSES, x, y, weights=weights, where=where, return_terms=True)

    torch.compiler.reset()
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    xs = {k: v.clone().requires_grad_() for k, v in x.items()}
    total, terms = compiled(xs, y)
    eager_total, eager_terms = f(x := {k: v.clone().requires_grad_() for k, v in x.items()}, y)
    assert_close(total, eager_total)
    for k in LOSSES:
        assert_close(terms[k], eager_terms[k])
    got = torch.autograd.grad(total, [xs["cls"], xs["box"]])
    want = torch.autograd.grad(eager_total, [x["cls"], x["box"]])
    for a, b in zip(got, want, strict=True):
        assert_close(a, b)


def test_check_loss_on_tree_loss() -> None:
    x, y = _batch(dtype=torch.float64)
    nested = {"cls": x["cls"], "box": [x["box"], x["box"].flip(0)]}
    targets = {"cls": y["cls"], "box": y["box"]}
    losses = {"cls": funcloss.cross_entropy, "box": funcloss.smooth_l1_loss}
    weights = {"cls": 2.0, "box": [0.5, 1.0]}

    def reference(loss, predictions, targets, weights):
        box = [F.smooth_l1_loss(p, targets["box"]) for p in predictions["box"]]
        cls = F.cross_entropy(predictions["cls"], targets["cls"])
        return 2.0 * cls + 0.5 * box[0] + box[1]

    # compile and compile_vmap_grad run; compile_grad (slow, and in between) is left out
    report = check_loss(
        funcloss.tree_loss,
        reference,
        losses,
        nested,
        targets,
        kwargs={"weights": weights},
        skip=["compile_grad"],
    )
    assert {"value", "jacrev", "gradcheck", "hessian", "vmap", "compile"} <= set(report.checked)
    assert "predictions['box'][1]" in report.checked["jacrev"]


def test_check_loss_catches_a_wrong_tree_reference() -> None:
    x, y = _batch(dtype=torch.float64)

    def wrong(loss, predictions, targets):  # drops the box term
        return F.cross_entropy(predictions["cls"], targets["cls"])

    losses = {"cls": funcloss.cross_entropy, "box": funcloss.smooth_l1_loss}
    two = {k: x[k] for k in losses}
    with pytest.raises(AssertionError, match=r"\[value\]"):
        check_loss(
            funcloss.tree_loss,
            wrong,
            losses,
            two,
            {k: y[k] for k in losses},
            skip=["compile", "compile_grad", "compile_vmap_grad"],
        )


# -- the module form ---------------------------------------------------------------------------


def _module(**kwargs) -> fnn.TreeLoss:
    class_weight = torch.tensor([1.0, 2.0, 0.5])
    losses = {"cls": fnn.CrossEntropyLoss(weight=class_weight), "box": funcloss.smooth_l1_loss}
    return fnn.TreeLoss(losses, **kwargs)


def test_module_state_dict_holds_buffers_and_log_variances() -> None:
    module = _module(uncertainty_weighting=True)
    state = module.state_dict()
    assert set(state) == {"losses.cls.weight", "log_variance.cls", "log_variance.box"}
    assert {n for n, _ in module.named_parameters()} == {"log_variance.cls", "log_variance.box"}
    assert module.double().losses["cls"].weight.dtype == torch.float64
    assert set(_module().state_dict()) == {"losses.cls.weight"}


def test_module_matches_function_and_torch() -> None:
    module = _module(weights={"cls": 0.5, "box": None})
    x, y = _batch()
    x, y = {k: x[k] for k in ("cls", "box")}, {k: y[k] for k in ("cls", "box")}
    expected = 0.5 * F.cross_entropy(
        x["cls"], y["cls"], weight=torch.tensor([1.0, 2.0, 0.5])
    ) + F.smooth_l1_loss(x["box"], y["box"])
    assert_close(module(x, y), expected)


def test_uncertainty_weighting() -> None:
    module = _module(uncertainty_weighting=True, weights={"cls": 2.0, "box": None})
    with torch.no_grad():
        module.log_variance["cls"].fill_(0.3)
        module.log_variance["box"].fill_(-0.2)
    x, y = _batch()
    x, y = {k: x[k] for k in ("cls", "box")}, {k: y[k] for k in ("cls", "box")}
    cls = F.cross_entropy(x["cls"], y["cls"], weight=torch.tensor([1.0, 2.0, 0.5]))
    box = F.smooth_l1_loss(x["box"], y["box"])
    s_cls, s_box = torch.tensor(0.3), torch.tensor(-0.2)
    expected = 2.0 * (torch.exp(-s_cls) * cls + s_cls) + torch.exp(-s_box) * box + s_box
    total = module(x, y)
    assert_close(total, expected)
    # the log-variances learn: d/ds (e^{-s} l + s) = 1 - e^{-s} l
    (g_cls, g_box) = torch.autograd.grad(
        total, [module.log_variance["cls"], module.log_variance["box"]]
    )
    assert_close(g_cls, 2.0 * (1 - torch.exp(-s_cls) * cls))
    assert_close(g_box, 1 - torch.exp(-s_box) * box)
    # a task without targets adds nothing, not even its log-variance
    total, terms = module(x, {"cls": y["cls"], "box": None}, return_terms=True)
    assert_close(total, 2.0 * (torch.exp(-s_cls) * cls + s_cls))
    assert_close(terms["box"], torch.zeros(()))


def test_module_compiles_and_functional_call() -> None:
    module = _module(uncertainty_weighting=True)
    x, y = _batch()
    x, y = {k: x[k] for k in ("cls", "box")}, {k: y[k] for k in ("cls", "box")}
    torch.compiler.reset()
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    assert_close(compiled(x, y), module(x, y))
    per_sample = vmap(module)(x, y)  # one total per sample (each term a mean over 1 row)
    rows = [
        module({k: v[i] for k, v in x.items()}, {k: v[i] for k, v in y.items()})
        for i in range(len(y["cls"]))
    ]
    assert_close(per_sample, torch.stack(rows))
    params = {"log_variance.cls": torch.tensor(1.0), "log_variance.box": torch.tensor(0.0)}
    called = functional_call(module, params, (x, y))
    with torch.no_grad():
        module.log_variance["cls"].fill_(1.0)
    assert_close(called, module(x, y))


def test_module_rejects_bad_config() -> None:
    with pytest.raises(ValueError, match=r"TreeLoss: `reduction` must be one of"):
        fnn.TreeLoss(funcloss.mse_loss, reduction="none")
    with pytest.raises(TypeError, match=r"TreeLoss: `loss\['a'\]` must be a loss function"):
        fnn.TreeLoss({"a": 1.0})


def test_jacfwd_keeps_float32_with_number_weights() -> None:
    # pytorch#90065: a 0-dim float32 tensor times a Python float has a float64 tangent
    x, y = _batch()
    weights = {"cls": 0.5, "box": 2.0, "obj": None}
    jac = torch.func.jacfwd(lambda p: funcloss.tree_loss(LOSSES, p, y, weights=weights))(x)
    assert {v.dtype for v in jac.values()} == {torch.float32}
    expected = jacrev(lambda p: funcloss.tree_loss(LOSSES, p, y, weights=weights))(x)
    for k in x:
        assert_close(jac[k], expected[k])


def test_structure_checks_run_on_every_call() -> None:
    # Eager calls reuse the matching of a structure seen before; a new structure is checked.
    x, y = _batch()
    funcloss.tree_loss(LOSSES, x, y)
    with pytest.raises(ValueError, match=r"`targets\['box'\]` must"):
        funcloss.tree_loss(LOSSES, x, {**y, "box": [y["box"]]})
    total = funcloss.tree_loss(LOSSES, x, {**y, "obj": None})  # same keys, a None leaf
    expected = F.cross_entropy(x["cls"], y["cls"]) + F.smooth_l1_loss(x["box"], y["box"])
    assert_close(total, expected)


def test_check_loss_in_dims_as_a_prefix_tree() -> None:
    x, y = _batch(dtype=torch.float64)
    losses = {"box": funcloss.smooth_l1_loss, "obj": funcloss.mse_loss}

    def reference(loss, predictions, targets):
        box = F.smooth_l1_loss(predictions["box"], targets["box"])
        return box + F.mse_loss(predictions["obj"], targets["obj"])

    predictions = {"box": x["box"], "obj": x["obj"]}
    targets = {"box": y["box"], "obj": y["obj"]}
    # vmap over the rows: in_dims is a tree for the predictions, a leaf for the targets
    report = check_loss(
        funcloss.tree_loss,
        reference,
        losses,
        predictions,
        targets,
        in_dims=[None, {"box": 0, "obj": 0}, 0],
        skip=["compile", "compile_grad", "compile_vmap_grad", "gradgradcheck", "hessian"],
    )
    assert "loop over 4 problems" in report.checked["vmap"]
