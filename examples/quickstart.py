"""funcloss quickstart: train a small classifier on scikit-learn's digits with funcloss.

Shows the three uses:
1. ``funcloss.cross_entropy(pred, y)`` as a drop-in for ``torch.nn.functional.cross_entropy``;
2. per-sample losses and per-sample gradient norms with ``torch.func.vmap`` (as DP-SGD or data
   attribution need them);
3. the module form, ``funcloss.nn.CrossEntropyLoss``.

Run: ``python examples/quickstart.py`` (CPU, a few seconds; the data ships with scikit-learn).
"""

from __future__ import annotations

import time

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.func import functional_call, grad, vmap

import funcloss
import funcloss.nn as fnn


def load_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    split = int(0.8 * len(y))
    return x[:split], y[:split], x[split:], y[split:]


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def main() -> None:
    torch.manual_seed(0)
    x_train, y_train, x_test, y_test = load_data()
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    # 1. The function, a drop-in for torch.nn.functional.cross_entropy.
    start = time.perf_counter()
    for epoch in range(20):
        for batch in torch.randperm(len(y_train)).split(128):
            loss = funcloss.cross_entropy(
                model(x_train[batch]), y_train[batch], label_smoothing=0.05
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if epoch % 10 == 9:
            print(f"epoch {epoch + 1:2d}: train loss {loss.item():.3f}")
    elapsed = time.perf_counter() - start
    print(f"trained in {elapsed:.1f} s; test accuracy {accuracy(model, x_test, y_test):.3f}")

    # 2. Per-sample losses and per-sample gradient norms with torch.func.
    params = {name: p.detach() for name, p in model.named_parameters()}

    def sample_loss(params: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, params, (x.unsqueeze(0),))
        return funcloss.cross_entropy(logits, y.unsqueeze(0))

    x, y = x_test[:256], y_test[:256]
    losses = vmap(sample_loss, in_dims=(None, 0, 0))(params, x, y)
    grads = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, x, y)
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads.values()]).norm(dim=0)
    hardest = losses.argmax().item()
    print(
        f"per-sample losses: {tuple(losses.shape)}, mean {losses.mean().item():.3f}, "
        f"hardest sample #{hardest} (label {y[hardest].item()}) loss {losses[hardest].item():.2f}"
    )
    median, largest = norms.median().item(), norms.max().item()
    print(f"per-sample gradient norms: median {median:.3f}, max {largest:.3f}")
    batch_loss = funcloss.cross_entropy(model(x), y)
    assert torch.allclose(losses.mean(), batch_loss, atol=1e-5), "per-sample mean != batch loss"

    # 3. The module form, with torch's class name and constructor arguments.
    criterion = fnn.CrossEntropyLoss(weight=torch.ones(10), label_smoothing=0.05)
    print(f"module: {criterion} -> test loss {criterion(model(x_test), y_test).item():.3f}")


if __name__ == "__main__":
    main()
