"""Metric learning on scikit-learn's digits with ``funcloss.supcon_loss``.

A small MLP maps each 8x8 digit to an 8-dimensional embedding and is trained with the supervised
contrastive loss (Khosla et al. 2020): digits of one class are pulled together on the unit
sphere, the others pushed apart. No classifier is trained: the test digits are classified by
their nearest training digit in embedding space (cosine similarity), before and after training.
The last batch of each epoch is smaller; ``where=`` pads it to the full batch size instead, so
every step has one shape (what ``torch.compile`` and ``vmap`` want).

Run: ``python examples/metric_learning_digits.py`` (CPU, a few seconds; the data ships with
scikit-learn).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import funcloss

BATCH, STEPS, TEMPERATURE = 128, 200, 0.1


def load_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    split = int(0.7 * len(y))
    return x[:split], y[:split], x[split:], y[split:]


@torch.no_grad()
def nearest_neighbour_accuracy(model: nn.Module, x_train, y_train, x_test, y_test) -> float:
    """1-NN by cosine similarity of the embeddings."""
    train = F.normalize(model(x_train), dim=-1)
    test = F.normalize(model(x_test), dim=-1)
    nearest = (test @ train.T).argmax(dim=1)
    return (y_train[nearest] == y_test).float().mean().item()


def padded_batch(x: torch.Tensor, y: torch.Tensor, start: int):
    """Rows ``start:start + BATCH``, padded to BATCH with masked rows (``where`` False)."""
    xb, yb = x[start : start + BATCH], y[start : start + BATCH]
    missing = BATCH - len(yb)
    where = torch.arange(BATCH) < len(yb)
    xb = torch.cat([xb, xb.new_zeros(missing, x.shape[1])])
    yb = torch.cat([yb, yb.new_zeros(missing)])
    return xb, yb, where


def main() -> None:
    torch.manual_seed(0)
    x_train, y_train, x_test, y_test = load_data()
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 8))
    before = nearest_neighbour_accuracy(model, x_train, y_train, x_test, y_test)
    print(f"1-NN test accuracy before training {before:.3f}")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    start, began = 0, time.perf_counter()
    for step in range(STEPS):
        xb, yb, where = padded_batch(x_train, y_train, start)
        loss = funcloss.supcon_loss(model(xb), yb, TEMPERATURE, where=where)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        start = start + BATCH if start + BATCH < len(y_train) else 0
        if step % 50 == 0:
            print(f"step {step:3d}  supcon loss {loss.item():.3f}")
    seconds = time.perf_counter() - began
    after = nearest_neighbour_accuracy(model, x_train, y_train, x_test, y_test)
    print(f"{STEPS} steps in {seconds:.1f} s")
    print(f"1-NN test accuracy after training {after:.3f}")


if __name__ == "__main__":
    main()
