"""Smoke test of an installed funcloss wheel, run by .ci/run from outside the source tree."""

import sys
from pathlib import Path

import torch
from hypothesis import given, settings

import funcloss
import funcloss.nn as fnn
import funcloss.testing as ft

package = Path(funcloss.__file__).parent
assert Path(sys.prefix) in package.parents, f"funcloss imported from {package}, not the venv"
assert (package / "py.typed").is_file(), "py.typed is missing from the wheel"

logits, classes = torch.randn(4, 3, requires_grad=True), torch.tensor([0, 2, 1, 0])
x, y = torch.randn(4, 3), torch.randn(4, 3)
losses = {
    "cross_entropy": funcloss.cross_entropy(logits, classes),
    "linear_cross_entropy": funcloss.linear_cross_entropy(
        torch.randn(4, 5), torch.randn(3, 5), classes
    ),
    "binary_cross_entropy_with_logits": funcloss.binary_cross_entropy_with_logits(x, y.sigmoid()),
    "multi_margin_loss": funcloss.multi_margin_loss(logits, classes),
    "cosine_embedding_loss": funcloss.cosine_embedding_loss(x, y, torch.ones(4)),
    "ctc_loss": funcloss.ctc_loss(
        torch.randn(6, 2, 4).log_softmax(2),
        torch.tensor([[1, 2], [3, 1]]),
        torch.tensor([6, 6]),
        torch.tensor([2, 2]),
    ),
    "huber_loss": funcloss.huber_loss(x, y),
    "tree_loss": funcloss.tree_loss(funcloss.mse_loss, {"a": x}, {"a": y}),
    "CrossEntropyLoss": fnn.CrossEntropyLoss(label_smoothing=0.1)(logits, classes),
}
for name, value in losses.items():
    assert value.shape == () and torch.isfinite(value), (name, value)
torch.testing.assert_close(
    losses["cross_entropy"], torch.nn.functional.cross_entropy(logits, classes)
)


@settings(max_examples=2, deadline=None, database=None)
@given(pair=ft.regression_pairs(ft.shapes(max_dims=2)))
def check_mse(pair):
    ft.check_loss(
        funcloss.mse_loss,
        torch.nn.functional.mse_loss,
        *pair,
        skip=("compile", "compile_grad", "compile_vmap_grad"),
    )


check_mse()
print(f"smoke: funcloss {funcloss.__version__} from {package}: {len(losses)} losses, testing ok")
