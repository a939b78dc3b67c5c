"""Time funcloss.ctc_loss forward + backward against torch's F.ctc_loss (CPU).

Also times autograd through funcloss's forward recursion (what the hand-written alpha-beta
backward replaces) and counts the bytes each keeps saved for backward.

    PYTHONPATH=$PWD python benchmarks/ctc_loss.py [--frames 50 --batch 16 --classes 20 --target 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import funcloss
from funcloss._sequence import _ctc_nll


def _problem(frames: int, batch: int, classes: int, target: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(frames, batch, classes, generator=generator)
    targets = torch.randint(1, classes, (batch, target), generator=generator)
    input_lengths = torch.randint(frames // 2 + target, frames + 1, (batch,), generator=generator)
    target_lengths = torch.randint(1, target + 1, (batch,), generator=generator)
    return logits, targets, input_lengths, target_lengths


def _autograd_ctc(log_probs, targets, input_lengths, target_lengths):
    """funcloss's forward differentiated by autograd (the custom backward bypassed)."""
    loss = _ctc_nll._forward(log_probs, targets, input_lengths, target_lengths, 0)
    return (loss / target_lengths.clamp_min(1)).mean()


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "torch": F.ctc_loss,
    "funcloss": funcloss.ctc_loss,
    "funcloss forward autodiffed": _autograd_ctc,
}


def _step(loss_fn: Callable[..., torch.Tensor], problem: tuple[torch.Tensor, ...]) -> None:
    logits, *args = problem
    x = logits.detach().requires_grad_()
    loss_fn(x.log_softmax(-1), *args).backward()


def saved_bytes(loss_fn: Callable[..., torch.Tensor], problem: tuple[torch.Tensor, ...]) -> int:
    """Bytes of the tensors the loss keeps for backward (after the log_softmax)."""
    logits, *args = problem
    log_probs = logits.log_softmax(-1).detach().requires_grad_()
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss_fn(log_probs, *args)
    return total


def benchmark(
    frames: int = 50, batch: int = 16, classes: int = 20, target: int = 10, repeats: int = 30
) -> dict[str, float]:
    """Median seconds per forward + backward for each loss, interleaved to share noise."""
    problem = _problem(frames, batch, classes, target)
    times: dict[str, list[float]] = {name: [] for name in LOSSES}
    for _ in range(3):
        for loss_fn in LOSSES.values():
            _step(loss_fn, problem)
    for _ in range(repeats):
        for name, loss_fn in LOSSES.items():
            start = time.perf_counter()
            _step(loss_fn, problem)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("frames", 50), ("batch", 16), ("classes", 20), ("target", 10)):
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--repeats", type=int, default=30)
    options = parser.parse_args()
    torch.set_num_threads(1)
    shape = (options.frames, options.batch, options.classes, options.target)
    medians = benchmark(*shape, repeats=options.repeats)
    print(f"T={shape[0]} N={shape[1]} C={shape[2]} S={shape[3]}, median of {options.repeats}")
    for name, seconds in medians.items():
        ratio = seconds / medians["torch"]
        saved = saved_bytes(LOSSES[name], _problem(*shape)) / 1024
        print(f"  {name:28s} {seconds * 1e3:8.2f} ms  {ratio:6.1f}x torch  saves {saved:8.1f} KiB")


if __name__ == "__main__":
    main()
