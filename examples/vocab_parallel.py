"""Train a tiny language-model head sharded over 2 processes, and check it against 1 process.

Tensor (vocab) parallelism on CPU with gloo: each rank holds half of the output layer
``W[V_r, H]``, computes its slice of the logits, and ``vocab_parallel_cross_entropy`` gives
every rank the loss of the full logits (one all-gather of a few numbers per row; no collective
in backward). The hidden states feeding the sharded layer are replicated, so their gradient is
the sum of every rank's part: one all-reduce, as in Megatron-LM's column-parallel linear. One
SGD step here equals the same step on one process. Runs in seconds:

    python examples/vocab_parallel.py
"""

from __future__ import annotations

import datetime
import os
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import funcloss
from funcloss.distributed import vocab_parallel_cross_entropy

VOCAB, HIDDEN, TOKENS, SHARDS = 37, 16, 24, (19, 18)  # uneven shards are fine
LR = 0.5


def model(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "embedding": torch.randn(VOCAB, HIDDEN, generator=generator) * 0.3,
        "head": torch.randn(VOCAB, HIDDEN, generator=generator) * 0.3,  # W, (V, H)
        "tokens": torch.randint(0, VOCAB, (TOKENS + 1,), generator=generator),
    }


def single_process_step() -> tuple[float, dict[str, torch.Tensor]]:
    params = {k: v.clone().requires_grad_() for k, v in model().items() if k != "tokens"}
    tokens = model()["tokens"]
    hidden = params["embedding"][tokens[:-1]]
    loss = funcloss.cross_entropy(hidden @ params["head"].T, tokens[1:], label_smoothing=0.1)
    loss.backward()
    return loss.item(), {k: (p - LR * p.grad).detach() for k, p in params.items()}


def rank_step(rank: int, store_path: str, results: dict) -> None:
    torch.set_num_threads(1)
    store = dist.FileStore(store_path, len(SHARDS))
    timeout = datetime.timedelta(seconds=60)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=2, timeout=timeout)
    start = sum(SHARDS[:rank])
    init = model()
    tokens = init["tokens"]
    embedding = init["embedding"].clone().requires_grad_()  # replicated
    head = init["head"][start : start + SHARDS[rank]].clone().requires_grad_()  # this shard
    hidden = embedding[tokens[:-1]]
    logits_shard = hidden @ head.T  # (N, V_r): the full (N, V) logits exist nowhere
    loss = vocab_parallel_cross_entropy(
        logits_shard, tokens[1:], vocab_start=start, label_smoothing=0.1
    )
    loss.backward()
    dist.all_reduce(embedding.grad)  # the replicated input's gradient: the sum of the parts
    with torch.no_grad():
        embedding -= LR * embedding.grad
        head -= LR * head.grad
    results[rank] = (loss.item(), embedding.detach(), head.detach())
    dist.destroy_process_group()


def main() -> None:
    expected_loss, expected = single_process_step()
    with tempfile.TemporaryDirectory() as directory, mp.Manager() as manager:
        results = manager.dict()
        store_path = os.path.join(directory, "store")
        mp.start_processes(rank_step, args=(store_path, results), nprocs=2, start_method="spawn")
        results = dict(results)
    losses = [results[rank][0] for rank in range(2)]
    head = torch.cat([results[rank][2] for rank in range(2)])
    print(f"loss on each rank: {losses[0]:.6f}, {losses[1]:.6f}; one process: {expected_loss:.6f}")
    head_error = (head - expected["head"]).abs().max().item()
    embedding_error = max(
        (results[r][1] - expected["embedding"]).abs().max().item() for r in (0, 1)
    )
    print(f"after one SGD step: head max error {head_error:.1e}, embedding {embedding_error:.1e}")
    assert losses[0] == losses[1], "the loss is the same on every rank, bit for bit"
    assert abs(losses[0] - expected_loss) < 1e-5
    assert head_error < 1e-5 and embedding_error < 1e-5
    print("vocab-parallel step matches the single-process step")


if __name__ == "__main__":
    main()
