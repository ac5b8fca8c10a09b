"""Multitask batching: the rows of all tasks in one list per split, every batch from one task.

The tasks' rows lie one after the other (task 0's, then task 1's, ...); each row carries ``task_id``. Train batches
of one task are that task's own length-bucketed batches (:class:`BucketBatchSampler`); the sampler decides which
task each step trains on. Like the single-task sampler, an epoch's batches depend only on (seed, epoch), so a run
resumed in the middle of an epoch gets the rest of that very epoch.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from encoderlab.data.collate import BucketBatchSampler, eval_shard, sorted_batches

TASK_ID = "task_id"


def task_probabilities(sizes: Sequence[int], sampling: str, temperature: float = 1.0) -> list[float]:
    """The share of train batches each task gets: proportional ``n_i / sum(n)``, temperature
    ``n_i^(1/T) / sum(n_j^(1/T))``, round_robin ``1 / len(sizes)``."""
    if sampling == "round_robin":
        weights = [1.0 if n > 0 else 0.0 for n in sizes]
    elif sampling == "temperature":
        weights = [float(n) ** (1.0 / temperature) for n in sizes]
    else:
        weights = [float(n) for n in sizes]
    total = sum(weights)
    return [w / total for w in weights]


def _mix(*parts: int) -> int:
    """A seed of its own for each (seed, task, epoch, cycle), so no two streams share a permutation."""
    return zlib.crc32(",".join(str(p) for p in parts).encode())


class MultiTaskBatchSampler(BucketBatchSampler):
    """Batches of one task at a time, the task of each step chosen by ``sampling``.

    An epoch has as many batches as all tasks together. ``proportional``: exactly every batch of every task, in a
    shuffled order (each example once per epoch). ``temperature``: each step draws its task with
    :func:`task_probabilities`; ``round_robin``: tasks in turn. Under these two a task that runs out of batches
    goes on with a freshly shuffled pass over its rows (and one that is drawn less leaves some rows unseen).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        sizes: Sequence[int],
        batch_size: int,
        sampling: str = "proportional",
        temperature: float = 1.0,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        sort: bool = True,
    ):
        super().__init__(lengths, batch_size, seed=seed, num_replicas=num_replicas, rank=rank, sort=sort)
        if sum(sizes) != len(self.lengths):
            raise ValueError(f"task sizes {list(sizes)} do not add up to the {len(self.lengths)} rows")
        self.sizes = list(sizes)
        self.offsets = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        self.sampling = sampling
        self.temperature = temperature
        self.probabilities = task_probabilities(self.sizes, sampling, temperature)

    def _task_batches(self, task: int, epoch: int, cycle: int) -> list[list[int]]:
        """One shuffled pass over ``task``'s rows, as global row indices."""
        lo = self.offsets[task]
        own = BucketBatchSampler(
            self.lengths[lo : lo + self.sizes[task]],
            self.batch_size,
            seed=_mix(self.seed, task, epoch),
            sort=self.sort,
        )
        return [[lo + i for i in b] for b in own.batches(cycle)]

    def _num_batches(self) -> int:
        return sum(math.ceil(n / self.batch_size) for n in self.sizes)

    def task_order(self, epoch: int) -> list[int]:
        """The task of each step of ``epoch`` (all ranks' steps, before they are dealt out)."""
        total = self._num_batches()
        g = torch.Generator().manual_seed(_mix(self.seed, "order", epoch))
        if self.sampling == "round_robin":
            turns = [t for t, n in enumerate(self.sizes) if n > 0]
            return [turns[j % len(turns)] for j in range(total)]
        if self.sampling == "temperature":
            p = torch.tensor(self.probabilities, dtype=torch.float64)
            return torch.multinomial(p, total, replacement=True, generator=g).tolist()
        order = [t for t, n in enumerate(self.sizes) for _ in range(math.ceil(n / self.batch_size))]
        return [order[i] for i in torch.randperm(len(order), generator=g).tolist()]

    def batches(self, epoch: int) -> list[list[int]]:
        streams: dict[int, list[list[int]]] = {}
        cycles = dict.fromkeys(range(len(self.sizes)), 0)
        out = []
        for t in self.task_order(epoch):
            if not streams.get(t):
                streams[t] = self._task_batches(t, epoch, cycles[t])
                cycles[t] += 1
            out.append(streams[t].pop(0))
        return out[self.rank :: self.num_replicas][: len(self)]


@dataclass
class TaskBatching:
    """How a multitask run batches its rows: ``sizes[split]`` is the number of rows of each task, in order."""

    sizes: dict[str, list[int]]
    sampling: str = "proportional"
    temperature: float = 1.0

    def train_sampler(self, lengths: Sequence[int], batch_size: int, **kw) -> MultiTaskBatchSampler:
        return MultiTaskBatchSampler(lengths, self.sizes["train"], batch_size, self.sampling, self.temperature, **kw)

    def eval_batches(
        self, split: str, lengths: Sequence[int], batch_size: int, world: int = 1, rank: int = 0
    ) -> list[list[int]]:
        """Each task's length-sorted batches, the tasks interleaved (so a capped evaluation still sees every task)."""
        per_task = []
        lo = 0
        for n in self.sizes[split]:
            own = lengths[lo : lo + n]
            if n == 0:
                per_task.append([])
                continue
            if world > 1:
                b = eval_shard(own, batch_size, world, rank, f"{split} split of task {len(per_task)}")
            else:
                b = sorted_batches(own, batch_size)
            per_task.append([[lo + i for i in batch] for batch in b])
            lo += n
        out = []
        for j in range(max((len(b) for b in per_task), default=0)):
            out += [b[j] for b in per_task if j < len(b)]
        return out


class TaskCollator:
    """Collates a one-task batch with that task's own collator and adds ``task_id`` (a 1-element tensor)."""

    def __init__(self, collators: Sequence[Callable]):
        self.collators = list(collators)

    def __call__(self, examples: Sequence[dict]) -> dict:
        tid = int(examples[0][TASK_ID])
        if any(int(e[TASK_ID]) != tid for e in examples):
            raise ValueError("a multitask batch mixes tasks; batches must come from TaskBatching")
        batch = self.collators[tid]([{k: v for k, v in e.items() if k != TASK_ID} for e in examples])
        batch[TASK_ID] = torch.tensor([tid])
        return batch
