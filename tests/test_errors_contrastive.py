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
