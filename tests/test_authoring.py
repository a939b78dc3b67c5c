"""The authoring kit as a user meets it (issue 13 §4): keyword-only config in
``custom_backward``, ``loss_module`` on partials, tensor config as buffers, config passed to
``forward``, and ``check_loss`` under ``-W error``."""

from __future__ import annotations

import functools
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor

import funcloss
from funcloss.testing import check_loss

ROOT = Path(__file__).resolve().parents[1]


@funcloss.custom_backward
def kernel_loss(input: Tensor, target: Tensor, *, sigma: float = 1.0) -> Tensor:
    return 1 - torch.exp(-((input - target) ** 2) / (2 * sigma**2))


@kernel_loss.backward
def _(grad: Tensor, input: Tensor, target: Tensor, *, sigma: float = 1.0) -> tuple[Tensor, Tensor]:
    # d/dx = (x - y) / sigma^2 * exp(-(x - y)^2 / (2 sigma^2)); d/dy = -d/dx
    diff = input - target
    d = grad * diff / sigma**2 * torch.exp(-(diff**2) / (2 * sigma**2))
    return d, -d


@kernel_loss.jvp
def _(input_t: Tensor, target_t: Tensor, input: Tensor, target: Tensor, *, sigma: float = 1.0):
    diff = input - target
    return diff / sigma**2 * torch.exp(-(diff**2) / (2 * sigma**2)) * (input_t - target_t)


def _kernel_reference(input: Tensor, target: Tensor, *, sigma: float = 1.0) -> Tensor:
    return 1 - torch.exp(-((input - target) ** 2) / (2 * sigma**2))


def test_custom_backward_keyword_only_config() -> None:
    x = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    y = torch.zeros(3, dtype=torch.float64)
    report = check_loss(
        kernel_loss,
        _kernel_reference,
        x,
        y,
        kwargs={"sigma": 2.0},
        skip=("compile_grad", "compile_vmap_grad", "module"),
    )
    assert {"value", "jacrev", "jacfwd", "hessian", "vmap", "compile"} <= set(report.checked)
    # sigma reaches the rules: the gradient at sigma=2 is (x / 4) exp(-x^2 / 8), by hand
    x = x.requires_grad_()
    (g,) = torch.autograd.grad(kernel_loss(x, y, sigma=2.0).sum(), x)
    torch.testing.assert_close(g, x.detach() / 4 * torch.exp(-(x.detach() ** 2) / 8))


def test_custom_backward_keyword_only_config_refused_positionally() -> None:
    x = torch.zeros(2)
    with pytest.raises(TypeError, match=r"kernel_loss: takes 2 positional arguments"):
        kernel_loss(x, x, 2.0)


def test_loss_module_keyword_only_config_from_custom_backward() -> None:
    KernelLoss = funcloss.loss_module(kernel_loss)
    m = KernelLoss(sigma=2.0)
    x, y = torch.tensor([1.0, 2.0]), torch.zeros(2)
    torch.testing.assert_close(m(x, y), kernel_loss(x, y, sigma=2.0))


def focal(input: Tensor, target: Tensor, gamma: float = 2.0, weight=None) -> Tensor:
    p = torch.sigmoid(input)
    loss = -((1 - p) ** gamma) * target * torch.log(p)
    return loss.mean() if weight is None else (weight * loss).mean()


FocalLoss = funcloss.loss_module(focal, name="FocalLoss")


def test_unannotated_default_none_tensor_config_is_a_buffer() -> None:
    m = FocalLoss(weight=torch.ones(3))
    assert list(m.state_dict()) == ["weight"]
    assert m.double().weight.dtype == torch.float64
    assert FocalLoss().weight is None
    x = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(
        m(x, torch.ones(4, 3, dtype=torch.float64)), focal(x, x.new_ones(4, 3))
    )


def test_config_passed_to_forward_is_a_clear_error() -> None:
    m = FocalLoss(gamma=2.0)
    x = torch.zeros(2)
    with pytest.raises(TypeError, match=r"FocalLoss: `gamma` is constructor config"):
        m(x, x, gamma=3.0)
    with pytest.raises(TypeError, match=r"FocalLoss: forward got an unexpected keyword `gama`"):
        m(x, x, gama=3.0)


def test_partial_derives_its_name_and_pickles() -> None:
    PartialFocal = funcloss.loss_module(functools.partial(focal, gamma=3.0))
    assert PartialFocal.__name__ == "FocalLoss"
    m = PartialFocal()
    assert repr(m) == "FocalLoss(gamma=3.0, weight=None)"
    x, y = torch.randn(3), torch.ones(3)
    torch.testing.assert_close(m(x, y), focal(x, y, gamma=3.0))
    named = funcloss.loss_module(functools.partial(focal, gamma=3.0), name="Focal3Loss")
    assert named.__name__ == "Focal3Loss"


def test_lambda_without_name_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match=r"loss_module: `name` must be given for <lambda>"):
        funcloss.loss_module(lambda input, target: (input - target).abs().mean())
    Lambda = funcloss.loss_module(lambda input, target: (input - target).sum(), name="DiffLoss")
    assert Lambda()(torch.ones(2), torch.zeros(2)).item() == 2.0


def test_decorator_form_is_refused() -> None:
    with pytest.raises(TypeError, match=r"loss_module: `fn` must be given"):
        funcloss.loss_module(name="MyLoss")  # type: ignore[call-overload]


PicklableFocal = funcloss.loss_module(functools.partial(focal, gamma=1.0), name="PicklableFocal")


def test_partial_module_pickles() -> None:
    m = pickle.loads(pickle.dumps(PicklableFocal(weight=torch.ones(2))))
    assert torch.equal(m.weight, torch.ones(2))


def test_check_loss_names_the_compile_backend_and_ignores_torch_jit_warning() -> None:
    script = (
        "import torch, funcloss\n"
        "from funcloss.testing import check_loss\n"
        "x = torch.tensor([0.5, -1.0], dtype=torch.float64)\n"
        "r = check_loss(funcloss.l1_loss, torch.nn.functional.l1_loss, x, torch.zeros_like(x),\n"
        "    skip=('compile_grad', 'compile_vmap_grad'), compile_backend='eager')\n"
        "print(r.checked['compile'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "backend='eager'" in result.stdout
