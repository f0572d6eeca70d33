"""Data-parallel training across processes (torchrun): this process's place in the job, gradient
and statistics averaging, and every rank's RNG state for exact resumes.

Rank r seeds its global RNGs with seed * world_size + r; every rank draws the same global batch from
shared generators and keeps its slice, so the result does not depend on the number of processes.
NCCL on GPUs, gloo on CPUs; without torchrun a single process (rank 0 of 1).
"""
from __future__ import annotations

import io
import os
import random
from dataclasses import dataclass

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 without one). Gradients are averaged with
    one all-reduce of the flattened gradients per step (as StyleGAN3 does), so the D / G phases can
    toggle requires_grad freely."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_reduce_grads(self, params) -> None:
        if self.world == 1:
            return
        params = [p for p in params if p.grad is not None]
        if not params:
            return
        flat = torch.cat([p.grad.flatten() for p in params])
        torch.distributed.all_reduce(flat)
        flat /= self.world
        torch.nn.utils.vector_to_parameters(flat, [p.grad for p in params])

    def mean(self, values: dict) -> dict:
        """Average a dict of floats over ranks."""
        if self.world == 1 or not values:
            return values
        t = torch.tensor([values[k] for k in sorted(values)], dtype=torch.float64)
        torch.distributed.all_reduce(t)
        return {k: v / self.world for k, v in zip(sorted(values), t.tolist())}

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def all_true(self, flag: bool) -> bool:
        """True only if `flag` is true on every rank (so every rank raises together)."""
        if self.world == 1:
            return flag
        t = torch.tensor([1 if flag else 0])
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
        return bool(t.item())


def init_distributed(device=None) -> tuple[Dist, torch.device]:
    """Join the torchrun job named by the environment (RANK, WORLD_SIZE, LOCAL_RANK): NCCL on GPUs,
    gloo on CPUs. Without torchrun: a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
    if world == 1:
        return Dist(), torch.device(device or ("cuda" if cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    d = Dist(torch.distributed.get_rank(), torch.distributed.get_world_size(), local_rank)
    return d, torch.device(f"cuda:{local_rank}" if cuda else "cpu")


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()),
                                                       *np_state[2:]],
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    name, keys, *rest = s["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in s["python"]))
    if s.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def gather_rng_states(dist: Dist) -> list[dict]:
    """Every rank's rng_state(), on every rank (serialised with torch.save, gathered as bytes)."""
    if dist.world == 1:
        return [rng_state()]
    buf = io.BytesIO()
    torch.save(rng_state(), buf)
    data = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
    sizes = [torch.zeros(1, dtype=torch.long) for _ in range(dist.world)]
    torch.distributed.all_gather(sizes, torch.tensor([len(data)]))
    n = max(int(x) for x in sizes)
    parts = [torch.zeros(n, dtype=torch.uint8) for _ in range(dist.world)]
    torch.distributed.all_gather(parts, torch.cat([data, torch.zeros(n - len(data), dtype=torch.uint8)]))
    return [torch.load(io.BytesIO(p[: int(k)].numpy().tobytes()), weights_only=True) for p, k in zip(parts, sizes)]
