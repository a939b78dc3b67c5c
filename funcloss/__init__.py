"""funcloss: functional-style losses for PyTorch that compose with torch.func.

Every loss is a plain function of tensors with :mod:`torch.nn.functional`'s name, arguments and
semantics, built from torch ops; :mod:`funcloss.nn` has the module forms.
"""

# ``funcloss.nn.CrossEntropyLoss`` works after ``import funcloss``, as ``torch.nn.X`` does after
# ``import torch``. funcloss.testing (it needs the test extra) is not imported here.
from . import nn as nn
from ._box import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss
from ._checks import set_value_checks
from ._contrastive import (
    arcface_loss,
    batch_triplet_loss,
    circle_loss,
    contrastive_loss,
    cosface_loss,
    info_nce_loss,
    multi_similarity_loss,
    ntxent_loss,
    supcon_loss,
)
from ._cross_entropy import cross_entropy, nll_loss
from ._divergence import generalized_kl_div, js_div
from ._embedding import (
    cosine_embedding_loss,
    hinge_embedding_loss,
    margin_ranking_loss,
    triplet_margin_loss,
    triplet_margin_with_distance_loss,
)
from ._fenchel_young import (
    binary_sparsemax_loss,
    hinge_loss,
    make_fenchel_young_loss,
    multiclass_hinge_loss,
    multiclass_perceptron_loss,
    perceptron_loss,
    smooth_labels,
    sparsemax,
    sparsemax_loss,
)
from ._focal import asymmetric_loss, focal_loss, poly1_cross_entropy, sigmoid_focal_loss
from ._function import custom_backward
from ._image import psnr_loss, ssim_loss, total_variation
from ._linear import linear_cross_entropy
from ._logistic import binary_cross_entropy, binary_cross_entropy_with_logits
from ._lovasz import lovasz_hinge_loss, lovasz_softmax_loss
from ._margin import (
    multi_margin_loss,
    multilabel_margin_loss,
    multilabel_soft_margin_loss,
    soft_margin_loss,
)
from ._module import loss_module
from ._overlap import (
    dice_loss,
    focal_tversky_loss,
    generalized_dice_loss,
    jaccard_loss,
    mcc_loss,
    tversky_loss,
)
from ._ranking import (
    approx_ndcg_loss,
    listmle_loss,
    pairwise_hinge_loss,
    pairwise_logistic_loss,
    ranking_softmax_loss,
)
from ._regression import (
    gaussian_nll_loss,
    huber_loss,
    kl_div,
    l1_loss,
    mse_loss,
    poisson_nll_loss,
    smooth_l1_loss,
)
from ._robust import (
    cauchy_loss,
    charbonnier_loss,
    cosine_distance_loss,
    geman_mcclure_loss,
    general_robust_loss,
    log_cosh_loss,
    quantile_loss,
    welsch_loss,
)
from ._sequence import ctc_loss
from ._tree import tree_loss

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "approx_ndcg_loss",
    "arcface_loss",
    "asymmetric_loss",
    "batch_triplet_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "binary_sparsemax_loss",
    "cauchy_loss",
    "charbonnier_loss",
    "circle_loss",
    "complete_box_iou_loss",
    "contrastive_loss",
    "cosface_loss",
    "cosine_distance_loss",
    "cosine_embedding_loss",
    "cross_entropy",
    "ctc_loss",
    "custom_backward",
    "dice_loss",
    "distance_box_iou_loss",
    "focal_loss",
    "focal_tversky_loss",
    "gaussian_nll_loss",
    "geman_mcclure_loss",
    "general_robust_loss",
    "generalized_box_iou_loss",
    "generalized_dice_loss",
    "generalized_kl_div",
    "hinge_embedding_loss",
    "hinge_loss",
    "huber_loss",
    "info_nce_loss",
    "jaccard_loss",
    "js_div",
    "kl_div",
    "l1_loss",
    "linear_cross_entropy",
    "listmle_loss",
    "log_cosh_loss",
    "loss_module",
    "lovasz_hinge_loss",
    "lovasz_softmax_loss",
    "make_fenchel_young_loss",
    "margin_ranking_loss",
    "mcc_loss",
    "mse_loss",
    "multi_margin_loss",
    "multi_similarity_loss",
    "multiclass_hinge_loss",
    "multiclass_perceptron_loss",
    "multilabel_margin_loss",
    "multilabel_soft_margin_loss",
    "nll_loss",
    "ntxent_loss",
    "pairwise_hinge_loss",
    "pairwise_logistic_loss",
    "perceptron_loss",
    "poisson_nll_loss",
    "poly1_cross_entropy",
    "psnr_loss",
    "quantile_loss",
    "ranking_softmax_loss",
    "set_value_checks",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "smooth_labels",
    "soft_margin_loss",
    "sparsemax",
    "sparsemax_loss",
    "ssim_loss",
    "supcon_loss",
    "total_variation",
    "tree_loss",
    "triplet_margin_loss",
    "triplet_margin_with_distance_loss",
    "tversky_loss",
    "welsch_loss",
]
