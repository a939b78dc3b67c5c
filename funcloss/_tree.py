"""``tree_loss``: one weighted total of several losses over matching pytrees (optree).

Multi-head models (class + box + objectness), multi-task learning, deep supervision (a list of
outputs at several depths) and distillation over dicts of features all sum losses over
matching structures. Every structure operation here is optree's, with ``none_is_leaf=True``
(a ``None`` target, mask or weight is a leaf: absent) and the default namespace; nothing is
registered with optree or torch.

Broadcasting a prefix tree (the losses, targets, masks, weights) onto the predictions: each
tree is flattened with optree's accessors, and each leaf of the predictions takes the one
prefix leaf whose accessor (keys *and* node types) begins its own. Anything else goes to
optree's ``prefix_errors``, so the rules and the error messages are optree's; what optree
accepts beyond that (a ``dict`` against an ``OrderedDict``, a leaf standing for an empty
subtree) is then matched on the keys alone. (optree 0.20's ``broadcast_prefix`` itself returns
the leaves in the *prefix's* order, so a ``dict`` prefix of an ``OrderedDict`` comes back
misaligned with the predictions' leaves: not used here.)

Why not flatten every tree with optree inside the graph: under ``torch.compile`` on torch
2.13 with optree 0.20, Dynamo cannot flatten a ``dict`` whose values are all Python constants
(a dict of loss functions, of float weights): it constant-folds optree's dict flatten, which
returns optree 0.20's ``DictMetaData``, and Dynamo cannot wrap that ("SourcelessBuilder.create
does not know how to wrap DictMetaData"). So a tree made only of constants is flattened
outside the graph (:func:`torch.compiler.substitute_in_graph` on funcloss's own ``_flatten``
folds it: this registers a rule for that function only), and the matching is comparisons of
constants, which Dynamo folds too. A tree holding tensors is flattened in the graph.
"""

from __future__ import annotations

import re
from numbers import Real
from typing import Any, NamedTuple

import optree
import torch
from torch import Tensor, nn

from ._checks import check_reduction, fail, shape_str
from ._modes import under_transform

_FN = "tree_loss"
_TOTALS = ("mean", "sum")

# A leaf's place in a tree: the (entry, node type) of each step from the root.
Key = tuple[tuple[Any, type], ...]


def _key(accessor: optree.PyTreeAccessor) -> Key:
    return tuple((entry.entry, entry.type) for entry in accessor)


def _flatten(tree: Any) -> tuple[tuple[Key, ...], tuple[Any, ...], tuple[str, ...]]:
    """The leaves of ``tree`` (``None`` is a leaf), their keys, and their paths as code."""
    accessors, leaves, _ = optree.tree_flatten_with_accessor(tree, none_is_leaf=True)
    return (
        tuple(_key(a) for a in accessors),
        tuple(leaves),
        tuple(a.codify("") for a in accessors),
    )


@torch.compiler.substitute_in_graph(_flatten, can_constant_fold_through=True)
def _flatten_traced(tree: Any) -> tuple[tuple[Key, ...], tuple[Any, ...], tuple[str, ...]]:
    # While compiling: a tree of constants is folded (the original runs, outside the graph);
    # a tree holding tensors is traced through this copy.
    accessors, leaves, _ = optree.tree_flatten_with_accessor(tree, none_is_leaf=True)
    return (
        tuple(_key(a) for a in accessors),
        tuple(leaves),
        tuple(a.codify("") for a in accessors),
    )


def loss_leaves(loss: Any) -> tuple[list[str], tuple[Any, ...], tuple[str, ...]]:
    """The leaves of a loss tree, a submodule name for each (its path: ``"box/0"``; the root
    is ``"loss"``), and its path as code (``"['box'][0]"``)."""
    _, leaves, codes = _flatten(loss)
    paths = optree.tree_paths(loss, none_is_leaf=True)
    names = ["/".join(str(k).replace(".", "_") for k in path) or "loss" for path in paths]
    return names, leaves, codes


# (name, predictions' treespec, prefix's treespec) -> (chosen, paths): the matching depends on
# the structures only, so eager calls after the first skip it (the treespecs are optree's,
# hashable, and exact: node types, keys, None leaves).
_PLANS: dict[tuple[str, optree.PyTreeSpec, optree.PyTreeSpec], tuple[list[int], list[str]]] = {}
_MAX_PLANS = 1024


class _Predictions:
    """The predictions' leaves and treespec, and each leaf's key (computed when needed)."""

    def __init__(self, predictions: Any) -> None:
        self.tree = predictions
        self.leaves, self.spec = optree.tree_flatten(predictions, none_is_leaf=True)
        self._keys: list[Key] | None = None

    @property
    def keys(self) -> list[Key]:
        if self._keys is None:
            self._keys = [_key(a) for a in self.spec.accessors()]
        return self._keys

    def broadcast(self, name: str, prefix: Any) -> tuple[list[Any], list[str]]:
        """``prefix``'s leaf for each prediction leaf, and that leaf's path (``name[...]``)."""
        if torch.compiler.is_compiling():  # folded by Dynamo; the plan is traced (constants)
            keys, leaves, codes = _flatten(prefix)
            chosen = self._plan(name, prefix, keys)
            return [leaves[i] for i in chosen], [name + codes[i] for i in chosen]
        flat, spec = optree.tree_flatten(prefix, none_is_leaf=True)
        cached = _PLANS.get((name, self.spec, spec))
        if cached is None:
            keys, _, codes = _flatten(prefix)
            chosen = self._plan(name, prefix, keys)
            if len(_PLANS) >= _MAX_PLANS:
                _PLANS.clear()
            cached = _PLANS[name, self.spec, spec] = chosen, [name + codes[i] for i in chosen]
        chosen, paths = cached
        return [flat[i] for i in chosen], paths

    def _plan(self, name: str, prefix: Any, keys: tuple[Key, ...]) -> list[int]:
        """For each prediction leaf, the index of its leaf among ``prefix``'s."""
        chosen = _match(self.keys, keys)
        if chosen is not None and len(set(chosen)) == len(keys):
            return chosen
        # Not the common case: optree decides, and names the first mismatch.
        errors = optree.prefix_errors(prefix, self.tree, none_is_leaf=True)
        if errors:
            raise _structure_error(name, str(errors[0](name)))
        # Valid for optree (a dict against an OrderedDict, a leaf for an empty subtree): match
        # on the paths alone, which optree's check has just vouched for.
        chosen = _match([_path(k) for k in self.keys], [_path(k) for k in keys])
        if chosen is None:  # unreachable for a structure optree accepts
            raise ValueError(f"{_FN}: `{name}` must match the structure of `predictions`.")
        return chosen


def _path(key: Key) -> tuple[Any, ...]:
    return tuple(entry for entry, _ in key)


def _match(full: list[Any], prefix: list[Any] | tuple[Any, ...]) -> list[int] | None:
    """For each full key, the index of the one prefix key that begins it (None if any has
    not exactly one)."""
    chosen: list[int] = []
    for key in full:
        found = [i for i, k in enumerate(prefix) if key[: len(k)] == k]
        if len(found) != 1:
            return None
        chosen.append(found[0])
    return chosen


def _structure_error(name: str, optree_message: str) -> ValueError:
    """The house error from optree's: the path, the rule, and optree's account of the rest."""
    lines = [line.strip() for line in optree_message.splitlines() if line.strip()]
    match = re.match(r"pytree structure error: (.*) at key path$", lines[0]) if lines else None
    if match is None or len(lines) < 2:
        rule = "match the structure of `predictions`"
        return ValueError(f"{_FN}: `{name}` must {rule}, got: {' '.join(lines)}")
    path = lines[1].removesuffix(" tree root")
    where = path.removeprefix(name)
    detail = " ".join(lines[2:]).removeprefix("At that key path, ").rstrip(".")
    for theirs, ours in (
        (f"the prefix pytree {name}", f"`{name}`"),
        ("the full pytree", "`predictions`"),
        (" extra key(s):", "; keys only in `predictions`:"),
        (" missing key(s):", f"; keys only in `{name}`:"),
    ):
        detail = detail.replace(theirs, ours)
    return ValueError(
        f"{_FN}: `{path}` must be a leaf or have the structure of `predictions{where}`, "
        f"got {match.group(1)}: {detail}."
    )


def _check_weight(path: str, weight: object) -> None:
    # the concrete types first: the abstract Real check is slow
    if weight is None or type(weight) in (float, int):
        return
    if isinstance(weight, Real) and not isinstance(weight, bool):
        return
    if not isinstance(weight, Tensor):
        fail(TypeError, _FN, path, "be a number, a 0-dim tensor or None", type(weight).__name__)
    if weight.dim() != 0:
        fail(ValueError, _FN, path, "be a number or a 0-dim tensor", shape_str(weight.shape))


def scale(term: Tensor, weight: Any) -> Tensor:
    """``weight * term``. Under a torch.func transform a Python number is made a tensor of the
    term's dtype first: under ``jacfwd`` a 0-dim tensor times a Python float has a float64
    tangent (pytorch#90065)."""
    if weight is None:
        return term
    if not isinstance(weight, Tensor) and under_transform():
        weight = torch.as_tensor(weight, dtype=term.dtype, device=term.device)
    return term * weight


def _zero(prediction: Any) -> Tensor:
    """The term of a task without a target: 0, in the prediction's floating dtype."""
    if isinstance(prediction, Tensor) and prediction.is_floating_point():
        return prediction.new_zeros(())
    return torch.zeros(())


class _Terms(NamedTuple):
    tree: _Predictions
    terms: list[Tensor]  # per prediction leaf: its loss, 0 where the target is None
    weights: list[Any]  # its weight, None for 1
    present: list[bool]  # target not None
    loss_paths: list[str]  # the path of its loss in `loss`: "loss['cls']"


def terms(
    loss: Any,
    predictions: Any,
    targets: Any,
    weights: Any,
    where: Any,
    reduction: str,
) -> _Terms:
    """Each prediction leaf's loss, weight, presence, and loss path."""
    check_reduction(_FN, reduction, _TOTALS)
    tree = _Predictions(predictions)
    n = len(tree.leaves)
    fns, fn_paths = tree.broadcast("loss", loss)
    ys, _ = tree.broadcast("targets", targets)
    masks = [None] * n if where is None else tree.broadcast("where", where)[0]
    if weights is None:
        factors: list[Any] = [None] * n
    else:
        factors, weight_paths = tree.broadcast("weights", weights)
        for path, factor in zip(weight_paths, factors, strict=True):
            _check_weight(path, factor)
    terms: list[Tensor] = []
    for fn, path, x, y, mask in zip(fns, fn_paths, tree.leaves, ys, masks, strict=True):
        if not callable(fn):
            fail(TypeError, _FN, path, "be a loss function", type(fn).__name__)
        if y is None:
            terms.append(_zero(x))
            continue
        # A loss module keeps its own config, its reduction included.
        options = {} if isinstance(fn, nn.Module) else {"reduction": reduction}
        if mask is not None:
            options["where"] = mask
        term = fn(x, y, **options)
        if not isinstance(term, Tensor) or term.dim() != 0:
            got = shape_str(term.shape) if isinstance(term, Tensor) else type(term).__name__
            fail(ValueError, _FN, path, "return a 0-dim tensor (reduction 'mean' or 'sum')", got)
        terms.append(term)
    return _Terms(tree, terms, factors, [y is not None for y in ys], fn_paths)


def total(parts: list[Tensor], like: list[Any]) -> Tensor:
    """Sum of the weighted terms (a sum over the tree, not a reduction of a loss)."""
    if not parts:
        return _zero(like[0] if like else None)
    result = parts[0]
    for part in parts[1:]:
        result = result + part
    return result


def tree_loss(
    loss: Any,
    predictions: Any,
    targets: Any,
    *,
    weights: Any = None,
    where: Any = None,
    reduction: str = "mean",
    return_terms: bool = False,
) -> Tensor | tuple[Tensor, Any]:
    r"""The weighted sum of losses over matching pytrees of predictions and targets.

    For multi-head models (detection: class + box + objectness), multi-task learning, deep
    supervision (one loss over a list of outputs at several depths) and distillation over dicts
    of features. Trees are optree pytrees (dicts, lists, tuples, namedtuples, ``None``...) whose
    leaves are tensors; each leaf :math:`i` of ``predictions`` is one term:

    .. math::
        L = \sum_i w_i\, \ell_i(x_i, y_i), \qquad
        \ell_i = \texttt{loss}_i(x_i, y_i,\ \texttt{reduction},\ \texttt{where}=m_i)

    ``loss``, ``targets``, ``where`` and ``weights`` are each a *prefix* of ``predictions``'
    structure: the same tree, or one cut short, where a leaf stands for the whole subtree of
    ``predictions`` below it (so one loss and one target serve every output of a deep
    supervision list). A ``None`` leaf means absent: a ``None`` target is a task without labels
    in this batch (its term is 0), a ``None`` mask means no ``where``, a ``None`` weight is 1.

    Args:
        loss: a loss function (any callable: funcloss's losses, loss modules, your own), or a
            pytree of them that is a prefix of ``predictions``. A function is called as
            ``fn(x, y, reduction=reduction)``, a loss module (an ``nn.Module``) as
            ``module(x, y)`` with its own config (its reduction included); ``where=m`` is
            added only when there is a mask, so losses without a ``where`` argument work.
            Each must return a 0-dim tensor.
        predictions: a pytree of tensors.
        targets: a pytree, a prefix of ``predictions``; leaves are the losses' targets or
            ``None``.
        weights: ``None`` (all 1), or a pytree, a prefix of ``predictions``, of numbers, 0-dim
            tensors or ``None``. Weights multiply the terms; they need not sum to 1.
        where: ``None``, or a pytree, a prefix of ``predictions``, of bool masks (each of the
            shape its loss takes, see the loss's ``where``) or ``None``.
        reduction: ``"mean"`` | ``"sum"``, passed to each loss. ``"none"`` is refused: losses
            of different shapes have no elementwise total (call the losses themselves).
        return_terms: also return the per-leaf losses :math:`\ell_i` (unweighted, 0 for a
            ``None`` target), a pytree of ``predictions``' structure, for logging.

    Returns:
        The total :math:`L`, a 0-dim tensor (the promoted dtype of the terms); with
        ``return_terms``, the pair ``(total, terms)``. Under ``torch.func.vmap`` the total is
        per sample.

    Raises:
        ValueError: a tree that is not a prefix of ``predictions`` (the message names the path,
            as ``tree_loss: `targets['box']` must ...``), a weight that is not 0-dim, a loss
            that does not return a 0-dim tensor, ``reduction="none"``.
        TypeError: a ``loss`` leaf that is not callable, a weight that is not a number or
            tensor. A bad mask (not bool, wrong shape) is refused by its loss.

    Examples:
        A detection-style head, a ``None`` target (no boxes labelled in this batch):

        >>> x = {"cls": torch.tensor([[2.0, 0.0]]), "box": torch.tensor([[0.5, 1.0]])}
        >>> y = {"cls": torch.tensor([0]), "box": None}
        >>> losses = {"cls": funcloss.cross_entropy, "box": funcloss.l1_loss}
        >>> total, terms = funcloss.tree_loss(losses, x, y, return_terms=True)
        >>> total, terms["box"]
        (tensor(0.1269), tensor(0.))

        Deep supervision: one loss and one target for every depth, weighted:

        >>> outputs = [torch.tensor([1.0, 2.0]), torch.tensor([1.5, 2.5])]
        >>> funcloss.tree_loss(funcloss.mse_loss, outputs, torch.tensor([1.0, 2.0]),
        ...                    weights=[0.5, 1.0])
        tensor(0.2500)
    """
    parts = terms(loss, predictions, targets, weights, where, reduction)
    weighted = [scale(t, w) for t, w in zip(parts.terms, parts.weights, strict=True)]
    result = total(weighted, parts.tree.leaves)
    if return_terms:
        return result, parts.tree.spec.unflatten(parts.terms)
    return result
