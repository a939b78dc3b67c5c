"""Bad input to the metric and contrastive losses: clear errors naming the function and argument."""

from __future__ import annotations

import pytest
import torch

import funcloss
import funcloss.nn as fnn

X = torch.randn(6, 4)
LABELS = torch.tensor([0, 0, 1, 1, 2, 2])

# The losses of (embeddings, labels): function and module.
BATCH = {
    "supcon_loss": (funcloss.supcon_loss, fnn.SupConLoss),
    "ntxent_loss": (funcloss.ntxent_loss, fnn.NTXentLoss),
    "contrastive_loss": (funcloss.contrastive_loss, fnn.ContrastiveLoss),
    "batch_triplet_loss": (funcloss.batch_triplet_loss, fnn.BatchTripletLoss),
    "multi_similarity_loss": (funcloss.multi_similarity_loss, fnn.MultiSimilarityLoss),
    "circle_loss": (funcloss.circle_loss, fnn.CircleLoss),
}
NAMES = sorted(BATCH)
# name -> the config that must be positive.
TEMPERATURE = ["supcon_loss", "ntxent_loss"]


@pytest.mark.parametrize("name", NAMES)
def test_bad_reduction(name: str) -> None:
    fn, _ = BATCH[name]
    with pytest.raises(
        ValueError, match=rf"^{name}: `reduction` must be one of 'none' \| 'mean' \| 'sum'"
    ):
        fn(X, LABELS, reduction="batchmean")


@pytest.mark.parametrize("name", NAMES)
def test_embeddings_must_be_floating_and_two_dimensional(name: str) -> None:
    fn, _ = BATCH[name]
    with pytest.raises(TypeError, match=rf"^{name}: `embeddings` must have a floating-point"):
        fn(X.long(), LABELS)
    with pytest.raises(TypeError, match=rf"^{name}: `embeddings` must be a torch.Tensor"):
        fn(X.tolist(), LABELS)
    with pytest.raises(ValueError, match=rf"^{name}: `embeddings` must have shape \(N, D\), got"):
        fn(X[:, 0], LABELS)
    with pytest.raises(ValueError, match=rf"^{name}: `embeddings` must have shape \(N, D\), got"):
        fn(X[None], LABELS)


@pytest.mark.parametrize("name", NAMES)
def test_labels_of_the_wrong_dtype_or_shape(name: str) -> None:
    fn, _ = BATCH[name]
    with pytest.raises(TypeError, match=rf"^{name}: `labels` must have an integer dtype, got"):
        fn(X, LABELS.float())
    with pytest.raises(TypeError, match=rf"^{name}: `labels` must have an integer dtype, got"):
        fn(X, LABELS > 0)
    with pytest.raises(
        ValueError,
        match=rf"^{name}: `labels` must have shape \(6,\), one group label per embedding, "
        r"got \(5,\)\.",
    ):
        fn(X, LABELS[:5])
    with pytest.raises(ValueError, match=rf"^{name}: `labels` must have shape \(6,\)"):
        fn(X, LABELS[:, None])


@pytest.mark.parametrize("name", TEMPERATURE)
@pytest.mark.parametrize("temperature", [0.0, -0.1, float("nan")])
def test_temperature_must_be_positive(name: str, temperature: float) -> None:
    fn, module = BATCH[name]
    with pytest.raises(ValueError, match=rf"^{name}: `temperature` must be positive, got"):
        fn(X, LABELS, temperature=temperature)
    with pytest.raises(ValueError, match=rf"^{module.__name__}: `temperature` must be positive"):
        module(temperature=temperature)  # at construction
    with pytest.raises(TypeError, match=rf"^{name}: `temperature` must be a real number"):
        fn(X, LABELS, temperature=torch.tensor(0.1))


@pytest.mark.parametrize("name", NAMES)
def test_bad_where(name: str) -> None:
    fn, _ = BATCH[name]
    with pytest.raises(TypeError, match=rf"^{name}: `where` must be a bool tensor"):
        fn(X, LABELS, where=torch.ones(6))
    with pytest.raises(ValueError, match=rf"^{name}: `where` must be broadcastable to .*\(6,\)"):
        fn(X, LABELS, where=torch.ones(6, 4, dtype=torch.bool))


# name -> (the config that must be a real number, the config that must be positive)
PAIR_CONFIG = {
    "contrastive_loss": (["pos_margin", "neg_margin"], []),
    "batch_triplet_loss": (["margin"], []),
    "multi_similarity_loss": (["base"], ["alpha", "beta"]),
    "circle_loss": (["m"], ["gamma"]),
}


@pytest.mark.parametrize("name", sorted(PAIR_CONFIG))
def test_pair_loss_config(name: str) -> None:
    fn, module = BATCH[name]
    numbers, positives = PAIR_CONFIG[name]
    for arg in numbers + positives:
        with pytest.raises(TypeError, match=rf"^{name}: `{arg}` must be a real number, got str"):
            fn(X, LABELS, **{arg: "0.5"})
        with pytest.raises(TypeError, match=rf"^{module.__name__}: `{arg}` must be a real number"):
            module(**{arg: torch.tensor(0.5)})  # at construction
    for arg in positives:
        for value in (0.0, -1.0):
            with pytest.raises(ValueError, match=rf"^{name}: `{arg}` must be positive, got"):
                fn(X, LABELS, **{arg: value})
            with pytest.raises(ValueError, match=rf"^{module.__name__}: `{arg}` must be positive"):
                module(**{arg: value})


def test_triplet_mining() -> None:
    with pytest.raises(
        ValueError, match=r"^batch_triplet_loss: `mining` must be 'all' or 'hard', got 'semihard'\."
    ):
        funcloss.batch_triplet_loss(X, LABELS, mining="semihard")
    with pytest.raises(ValueError, match=r"^BatchTripletLoss: `mining` must be 'all' or 'hard'"):
        fnn.BatchTripletLoss(mining="batch-hard")


def test_pair_loss_margins_are_keyword_only() -> None:
    """``contrastive_loss(x, y, 0.5)``: the margins are keyword-only (PML's constructor order
    is not funcloss's), so a positional margin is a TypeError rather than a silent mix-up."""
    for name in PAIR_CONFIG:
        with pytest.raises(TypeError, match="positional"):
            BATCH[name][0](X, LABELS, 0.5)


# -- info_nce_loss ---------------------------------------------------------------------------


def test_info_nce_shapes() -> None:
    fn = "info_nce_loss"
    with pytest.raises(ValueError, match=rf"^{fn}: `query` must have shape \(N, D\), got \(6,\)"):
        funcloss.info_nce_loss(X[:, 0], X[:, 0])
    with pytest.raises(
        ValueError, match=rf"^{fn}: `positive_key` must have the query's shape \(6, 4\), got"
    ):
        funcloss.info_nce_loss(X, X[:5])
    with pytest.raises(
        ValueError,
        match=rf"^{fn}: `negative_keys` must have shape \(M, 4\) \(shared\) or \(6, M, 4\) "
        r"\(per query\), got \(3, 5\)\.",
    ):
        funcloss.info_nce_loss(X, X, torch.randn(3, 5))
    with pytest.raises(ValueError, match=rf"^{fn}: `negative_keys` must have shape"):
        funcloss.info_nce_loss(X, X, torch.randn(5, 3, 4))
    with pytest.raises(TypeError, match=rf"^{fn}: `negative_keys` must have a floating-point"):
        funcloss.info_nce_loss(X, X, torch.ones(3, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match=rf"^{fn}: `symmetric` must be False when"):
        funcloss.info_nce_loss(X, X, torch.randn(3, 4), symmetric=True)


def test_info_nce_config() -> None:
    with pytest.raises(ValueError, match=r"^info_nce_loss: `temperature` must be positive"):
        funcloss.info_nce_loss(X, X, temperature=0.0)
    with pytest.raises(ValueError, match=r"^InfoNCELoss: `temperature` must be positive"):
        fnn.InfoNCELoss(temperature=-1.0)
    with pytest.raises(TypeError, match=r"^InfoNCELoss: `symmetric` must be a bool, got str"):
        fnn.InfoNCELoss(symmetric="yes")
    with pytest.raises(ValueError, match=r"^info_nce_loss: `reduction` must be one of"):
        funcloss.info_nce_loss(X, X, reduction="batchmean")


# -- arcface_loss, cosface_loss --------------------------------------------------------------

COSINES = torch.rand(6, 3) * 2 - 1
TARGET = torch.tensor([0, 1, 2, 0, 1, 2])
MARGIN = {"arcface_loss": fnn.ArcFaceLoss, "cosface_loss": fnn.CosFaceLoss}


@pytest.mark.parametrize("name", sorted(MARGIN))
def test_margin_loss_inputs(name: str) -> None:
    fn = getattr(funcloss, name)
    with pytest.raises(ValueError, match=rf"^{name}: `input` must have shape \(N, C\) with C > 0"):
        fn(COSINES[0], TARGET[:1])
    with pytest.raises(TypeError, match=rf"^{name}: `input` must have a floating-point dtype"):
        fn(COSINES.long(), TARGET)
    with pytest.raises(TypeError, match=rf"^{name}: `target` must have an integer dtype"):
        fn(COSINES, TARGET.float())
    with pytest.raises(
        ValueError, match=rf"^{name}: `target` must have shape \(6,\), one class index per row"
    ):
        fn(COSINES, TARGET[:4])
    with pytest.raises(IndexError, match=rf"^{name}: `target` values must be in \[0, 3\), got 3"):
        fn(COSINES, torch.tensor([0, 1, 2, 3, 1, 2]))
    # a masked row's class index is not read
    where = torch.tensor([True, True, True, False, True, True])
    assert torch.isfinite(fn(COSINES, torch.tensor([0, 1, 2, 9, 1, 2]), where=where))


@pytest.mark.parametrize("name", sorted(MARGIN))
def test_margin_loss_config(name: str) -> None:
    fn, module = getattr(funcloss, name), MARGIN[name]
    with pytest.raises(ValueError, match=rf"^{name}: `scale` must be positive, got 0.0"):
        fn(COSINES, TARGET, scale=0.0)
    with pytest.raises(ValueError, match=rf"^{module.__name__}: `scale` must be positive"):
        module(scale=-1.0)
    with pytest.raises(TypeError, match=rf"^{name}: `margin` must be a real number"):
        fn(COSINES, TARGET, margin="0.5")
    with pytest.raises(ValueError, match=rf"^{name}: `reduction` must be one of"):
        fn(COSINES, TARGET, reduction="batchmean")


def test_arcface_margin_is_an_angle() -> None:
    for margin in (-0.1, 3.2):
        with pytest.raises(
            ValueError, match=r"^arcface_loss: `margin` must be an angle in \[0, pi\) \(radians\)"
        ):
            funcloss.arcface_loss(COSINES, TARGET, margin=margin)
    with pytest.raises(ValueError, match=r"^ArcFaceLoss: `margin` must be an angle"):
        fnn.ArcFaceLoss(margin=28.6)  # PML's degrees
    with pytest.raises(TypeError, match=r"^ArcFaceLoss: `easy_margin` must be a bool"):
        fnn.ArcFaceLoss(easy_margin=1)
