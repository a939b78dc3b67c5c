"""Public testing kit: Hypothesis strategies for loss inputs and :func:`check_loss`.

Needs the ``test`` extra (``hypothesis``).
"""

from .check import CheckReport, check_loss
from .strategies import (
    class_targets,
    floats,
    logits,
    probabilities,
    regression_pairs,
    shapes,
)

__all__ = [
    "CheckReport",
    "check_loss",
    "class_targets",
    "floats",
    "logits",
    "probabilities",
    "regression_pairs",
    "shapes",
]
