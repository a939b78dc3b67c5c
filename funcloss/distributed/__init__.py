"""Vocab-parallel losses over torch.distributed, exact under torch.func.

The output layer of a large-vocabulary model sharded over a process group: each rank holds a
slice of the classes' logits, and the loss and its gradients equal the single-device ones
(:func:`vocab_parallel_cross_entropy`). The collectives are funcloss's own thin wrappers over
``torch.distributed`` with local derivatives, so ``grad``, ``vmap``, ``jacrev``, ``jacfwd`` and
``torch.compile`` work on each rank as on one device.
"""

from .._module import loss_module
from ._cross_entropy import vocab_parallel_cross_entropy
from ._linear import vocab_parallel_linear_cross_entropy

VocabParallelCrossEntropyLoss = loss_module(
    vocab_parallel_cross_entropy, name="VocabParallelCrossEntropyLoss"
)

VocabParallelLinearCrossEntropyLoss = loss_module(
    vocab_parallel_linear_cross_entropy,
    name="VocabParallelLinearCrossEntropyLoss",
    forward_args=("linear_bias_shard",),
)

__all__ = [
    "VocabParallelCrossEntropyLoss",
    "VocabParallelLinearCrossEntropyLoss",
    "vocab_parallel_cross_entropy",
    "vocab_parallel_linear_cross_entropy",
]
