"""Write your own loss with a hand-written backward, and prove it right.

The classic tutorial subclasses ``torch.autograd.Function`` with ``forward(ctx, ...)``: that
breaks under ``vmap``, ``jacrev``, ``hessian`` and friends, and nothing says so. Here the same
loss is built with ``funcloss.custom_backward``, wrapped as a module with ``loss_module``,
verified with ``funcloss.testing.check_loss`` in a Hypothesis test, and the same check catches a
backward with a classic mistake. Runs in seconds on CPU:

    python examples/custom_loss.py
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import funcloss
from funcloss.testing import check_loss, regression_pairs, shapes


# 1. The loss. A Gaussian-kernel (Welsch) loss is bounded, so outliers cannot dominate:
#        loss = 1 - exp(-(x - y)^2 / (2 sigma^2))
@funcloss.custom_backward
def gaussian_kernel_loss(input, target, sigma: float = 1.0):
    return 1 - torch.exp(-((input - target) ** 2) / (2 * sigma**2))


@gaussian_kernel_loss.backward
def _(grad, input, target, sigma=1.0):
    # d/dx = (x - y) / sigma^2 * exp(-(x - y)^2 / (2 sigma^2));  d/dy = -d/dx.
    # Built from torch ops on the inputs, so second derivatives (hessian) are exact too.
    diff = input - target
    d = grad * diff / sigma**2 * torch.exp(-(diff**2) / (2 * sigma**2))
    return d, -d  # one gradient per tensor argument


@gaussian_kernel_loss.jvp  # optional: forward mode (jacfwd, hessian)
def _(input_t, target_t, input, target, sigma=1.0):
    diff = input - target
    return diff / sigma**2 * torch.exp(-(diff**2) / (2 * sigma**2)) * (input_t - target_t)


# 2. Its module: `sigma` (a parameter with a default) becomes a constructor argument.
GaussianKernelLoss = funcloss.loss_module(gaussian_kernel_loss)


# 3. A reference to check against: the textbook formula, which autograd differentiates.
def reference(input, target, sigma=1.0):
    return 1 - torch.exp(-((input - target) ** 2) / (2 * sigma**2))


# 4. The check, inside a Hypothesis test: drawn shapes, values and sigma. (The compile
#    properties take a second or two each, so they run once below instead.)
@settings(max_examples=10, deadline=None, derandomize=True)
@given(pair=regression_pairs(shapes(max_dims=2)), sigma=st.floats(0.5, 3.0))
def test_gaussian_kernel_loss(pair, sigma):
    input, target = pair
    check_loss(
        gaussian_kernel_loss,
        reference,
        input,
        target,
        kwargs={"sigma": sigma},
        module=GaussianKernelLoss,
        skip=("compile", "compile_grad", "compile_vmap_grad"),
    )


# 5. The classic mistake: the backward forgets the 1 / sigma^2 of the chain rule.
@funcloss.custom_backward
def wrong_kernel_loss(input, target, sigma: float = 1.0):
    return 1 - torch.exp(-((input - target) ** 2) / (2 * sigma**2))


@wrong_kernel_loss.backward
def _(grad, input, target, sigma=1.0):
    diff = input - target
    d = grad * diff * torch.exp(-(diff**2) / (2 * sigma**2))  # missing / sigma**2
    return d, -d


def main():
    test_gaussian_kernel_loss()
    print("Hypothesis: check_loss held on 10 drawn examples (shapes, values, sigma).")

    input = torch.tensor([[0.5, -1.0, 2.0], [0.0, 3.0, -0.5]], dtype=torch.float64)
    target = torch.zeros(2, 3, dtype=torch.float64)
    kwargs = {"sigma": 2.0}
    module = GaussianKernelLoss
    print("\nEvery property, compile included, on one example:")
    print(check_loss(gaussian_kernel_loss, reference, input, target, kwargs=kwargs, module=module))

    try:
        skip = ["compile", "compile_vmap_grad"]
        check_loss(wrong_kernel_loss, reference, input, target, kwargs=kwargs, skip=skip)
    except AssertionError as error:
        print("\nThe same check on a backward that forgets 1 / sigma^2:")
        print(str(error))
    else:
        raise SystemExit("check_loss missed the wrong backward")


if __name__ == "__main__":
    main()
