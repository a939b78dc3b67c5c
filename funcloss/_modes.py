"""Execution-mode predicates: is a torch.func transform active, is torch.compile tracing.

These are the only places that ask; the rest of funcloss calls them.
"""

from __future__ import annotations

import torch


@torch.compiler.assume_constant_result
def under_transform() -> bool:
    """True inside a torch.func transform (``grad``, ``vmap``, ``jacrev``, ``jacfwd``, ...).

    Safe to call while torch.compile traces: Dynamo runs it once and folds the result into the
    graph. (Written inline, ``peek_interpreter_stack() is None`` is wrongly ``False`` under a
    plain ``torch.compile`` on torch 2.13: Dynamo wraps the ``None`` in an object variable.)
    """
    return torch._C._functorch.peek_interpreter_stack() is not None
