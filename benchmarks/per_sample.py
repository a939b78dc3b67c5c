"""Per-sample gradients where torch's losses have no vmap batching rule (issue 15).

DP-SGD and data attribution take the gradient of each sample's loss with respect to the model's
parameters: ``vmap(grad(loss_of_one_sample), in_dims=(None, 0, 0))(params, x, y)``. torch's
``multi_margin_loss``, ``multilabel_margin_loss``, ``soft_margin_loss`` and ``ctc_loss`` have no
batching rule, so under ``vmap`` torch runs its slow fallback (a loop over the samples, with a
warning); the other road is a Python loop of ``grad`` per sample. funcloss's losses are made of
batched ops. Each contender runs the same model (a linear layer; for ``ctc_loss`` per frame,
then ``log_softmax``) and returns the ``(B, *W.shape)`` per-sample gradients, which are checked
against each other before the timing. Paired, interleaved rounds; medians of per-round ratios.

    PYTHONPATH=$PWD python benchmarks/per_sample.py [--rounds 15] [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from _paired import PeakMemory, interleaved, median_seconds, paired_ratio
from torch import Tensor
from torch.func import grad, vmap

import funcloss

SampleLoss = Callable[[Callable[..., Tensor], Tensor, Tensor, Tensor], Tensor]


class Case(NamedTuple):
    """``data(batch, generator) -> (W, x, y)`` and the loss of one sample,
    ``loss(fn, W, x_i, y_i)`` for ``fn`` torch's or funcloss's function."""

    data: Callable[[int, torch.Generator], tuple[Tensor, Tensor, Tensor]]
    loss: SampleLoss
    shape: str


FEATURES, CLASSES, FRAMES, LABELS = 32, 10, 50, 10


def _classes(batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    weight = torch.randn(CLASSES, FEATURES, generator=generator) / FEATURES**0.5
    return weight, torch.randn(batch, FEATURES, generator=generator), torch.empty(0)


def _multi_margin(batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    weight, x, _ = _classes(batch, generator)
    return weight, x, torch.randint(0, CLASSES, (batch,), generator=generator)


def _multilabel(batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    weight, x, _ = _classes(batch, generator)
    labels = torch.randint(0, CLASSES, (batch, CLASSES), generator=generator)
    # at most 4 labels, then -1 (the end of the sample's label list)
    labels[:, 4:] = -1
    return weight, x, labels


def _soft_margin(batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    weight, x, _ = _classes(batch, generator)
    return weight, x, torch.randint(0, 2, (batch, CLASSES), generator=generator) * 2.0 - 1


def _ctc(batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    weight = torch.randn(CLASSES, FEATURES, generator=generator) / FEATURES**0.5
    frames = torch.randn(batch, FRAMES, FEATURES, generator=generator)
    return weight, frames, torch.randint(1, CLASSES, (batch, LABELS), generator=generator)


def _ctc_loss(fn: Callable[..., Tensor], weight: Tensor, frames: Tensor, labels: Tensor) -> Tensor:
    log_probs = (frames @ weight.T).log_softmax(-1)  # (T, C): one unbatched sample
    lengths = torch.tensor(FRAMES), torch.tensor(LABELS)
    return fn(log_probs, labels, *lengths)


CASES = {
    "multi_margin_loss": Case(
        _multi_margin,
        lambda fn, w, x, y: fn((w @ x).unsqueeze(0), y.unsqueeze(0)),
        f"C={CLASSES}",
    ),
    "multilabel_margin_loss": Case(
        _multilabel,
        lambda fn, w, x, y: fn((w @ x).unsqueeze(0), y.unsqueeze(0)),
        f"C={CLASSES}, 4 labels",
    ),
    "soft_margin_loss": Case(_soft_margin, lambda fn, w, x, y: fn(w @ x, y), f"C={CLASSES}"),
    "ctc_loss": Case(_ctc, _ctc_loss, f"T={FRAMES}, C={CLASSES}, S={LABELS}"),
}


def contenders(case: Case, batch: int) -> dict[str, Callable[[], Tensor]]:
    """funcloss under vmap, torch under vmap (its fallback) and torch in a loop."""
    weight, x, y = case.data(batch, torch.Generator().manual_seed(0))
    torch_fn = getattr(F, next(name for name, c in CASES.items() if c is case))
    funcloss_fn = getattr(funcloss, next(name for name, c in CASES.items() if c is case))

    def per_sample(fn: Callable[..., Tensor]) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
        return grad(lambda w, x, y: case.loss(fn, w, x, y))

    funcloss_grads = vmap(per_sample(funcloss_fn), in_dims=(None, 0, 0))
    torch_grads = vmap(per_sample(torch_fn), in_dims=(None, 0, 0))
    torch_one = per_sample(torch_fn)

    def torch_loop() -> Tensor:
        return torch.stack([torch_one(weight, x[i], y[i]) for i in range(batch)])

    return {
        "funcloss vmap": lambda: funcloss_grads(weight, x, y),
        "torch vmap": lambda: torch_grads(weight, x, y),
        "torch loop": torch_loop,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, nargs="*", default=[16, 64, 256])
    parser.add_argument("--quick", action="store_true", help="one tiny batch, two rounds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batches, rounds = ([4], 2) if args.quick else (args.batch, args.rounds)
    # torch's fallback warns on every call ("There is a performance drop ...")
    warnings.filterwarnings("ignore", message="There is a performance drop")
    meter = PeakMemory()
    print(f"per-sample gradients, {args.threads} thread(s), {rounds} rounds; torch / funcloss")
    print(
        f"{'loss':24} {'shape':22} {'B':>4} {'funcloss ms':>12} {'torch vmap ms':>14} "
        f"{'torch loop ms':>14} {'vmap speed-up':>14} {'loop speed-up':>14}"
    )
    for name, case in CASES.items():
        for batch in batches:
            runs = contenders(case, batch)
            results = [fn() for fn in runs.values()]
            for other in results[1:]:  # the same per-sample gradients
                torch.testing.assert_close(results[0], other, rtol=1e-4, atol=1e-5)
            samples = interleaved(runs, rounds, meter, memory=False)
            ms = {key: median_seconds(samples, key) * 1e3 for key in runs}
            vmap_ratio = paired_ratio(samples, "torch vmap", "funcloss vmap")
            loop_ratio = paired_ratio(samples, "torch loop", "funcloss vmap")
            print(
                f"{name:24} {case.shape:22} {batch:>4} {ms['funcloss vmap']:>12.3f} "
                f"{ms['torch vmap']:>14.3f} {ms['torch loop']:>14.3f} {vmap_ratio:>13.2f}x "
                f"{loop_ratio:>13.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
