"""funcloss: functional-style losses for PyTorch that compose with torch.func.

Every loss is a plain function of tensors with :mod:`torch.nn.functional`'s name, arguments and
semantics, built from torch ops; :mod:`funcloss.nn` has the module forms.
"""

from ._classification import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    nll_loss,
)
from ._function import custom_backward
from ._linear import linear_cross_entropy
from ._module import loss_module

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "custom_backward",
    "linear_cross_entropy",
    "loss_module",
    "nll_loss",
]
