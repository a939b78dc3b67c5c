"""funcloss: functional-style losses for PyTorch that compose with torch.func.

Every loss is a plain function of tensors with :mod:`torch.nn.functional`'s name, arguments and
semantics, built from torch ops; :mod:`funcloss.nn` has the module forms.
"""

# ``funcloss.nn.CrossEntropyLoss`` works after ``import funcloss``, as ``torch.nn.X`` does after
# ``import torch``. funcloss.testing (it needs the test extra) is not imported here.
from . import nn as nn
from ._checks import set_value_checks
from ._contrastive import (
    arcface_loss,
    cosface_loss,
    info_nce_loss,
    ntxent_loss,
    supcon_loss,
)
from ._cross_entropy import cross_entropy, nll_loss
from ._embedding import (
    cosine_embedding_loss,
    hinge_embedding_loss,
    margin_ranking_loss,
    triplet_margin_loss,
    triplet_margin_with_distance_loss,
)
from ._function import custom_backward
from ._linear import linear_cross_entropy
from ._logistic import binary_cross_entropy, binary_cross_entropy_with_logits
from ._margin import (
    multi_margin_loss,
    multilabel_margin_loss,
    multilabel_soft_margin_loss,
    soft_margin_loss,
)
from ._module import loss_module
from ._regression import (
    gaussian_nll_loss,
    huber_loss,
    kl_div,
    l1_loss,
    mse_loss,
    poisson_nll_loss,
    smooth_l1_loss,
)
from ._sequence import ctc_loss
from ._tree import tree_loss

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "arcface_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cosface_loss",
    "cosine_embedding_loss",
    "cross_entropy",
    "ctc_loss",
    "custom_backward",
    "gaussian_nll_loss",
    "hinge_embedding_loss",
    "huber_loss",
    "info_nce_loss",
    "kl_div",
    "l1_loss",
    "linear_cross_entropy",
    "loss_module",
    "margin_ranking_loss",
    "mse_loss",
    "multi_margin_loss",
    "multilabel_margin_loss",
    "multilabel_soft_margin_loss",
    "nll_loss",
    "ntxent_loss",
    "poisson_nll_loss",
    "set_value_checks",
    "smooth_l1_loss",
    "soft_margin_loss",
    "supcon_loss",
    "tree_loss",
    "triplet_margin_loss",
    "triplet_margin_with_distance_loss",
]
