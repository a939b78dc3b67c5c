"""Public testing kit: Hypothesis strategies for loss inputs.

Needs the ``test`` extra (``hypothesis``).
"""

from .strategies import (
    class_targets,
    floats,
    logits,
    probabilities,
    regression_pairs,
    shapes,
)

__all__ = [
    "class_targets",
    "floats",
    "logits",
    "probabilities",
    "regression_pairs",
    "shapes",
]
