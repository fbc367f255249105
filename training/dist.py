"""Single-process and distributed training through one code path (accelerate).

Run any stage as ``python -m prefsum train ...`` (one process) or ``accelerate launch [--cpu] --num_processes N -m
prefsum train ...`` (DDP; gloo on CPU, NCCL on GPUs; FSDP/DeepSpeed through an accelerate config file). Each step's
global batch is chosen from (seed, step) exactly as in one process; every process takes its contiguous share, and
losses are normalised by the *global* count of what they average over, so N processes compute the same update as one
process with the same global batch.
"""

from __future__ import annotations

from typing import Any


class Dist:
    """The few things a stage needs from accelerate: rank, sharding, prepare/unwrap, a barrier, a global sum."""

    def __init__(self) -> None:
        import torch  # noqa: PLC0415
        from accelerate import Accelerator  # noqa: PLC0415

        self.acc = Accelerator(cpu=not torch.cuda.is_available())
        self.rank = self.acc.process_index
        self.world = self.acc.num_processes
        self.is_main = self.acc.is_main_process
        self.device = self.acc.device

    def log(self, message: str) -> None:
        """Print once (from the main process)."""
        if self.is_main:
            print(message, flush=True)

    def local(self, items: list[Any]) -> list[Any]:
        """This process's contiguous share of a global batch."""
        if len(items) % self.world:
            raise ValueError(
                f"the global batch ({len(items)}) must be divisible by the number of processes ({self.world}); "
                "change batch_size or --num_processes"
            )
        k = len(items) // self.world
        return items[self.rank * k : (self.rank + 1) * k]

    def prepare(self, model, optimizer):
        return self.acc.prepare(model, optimizer)

    def unwrap(self, model):
        return self.acc.unwrap_model(model)

    def wait(self) -> None:
        self.acc.wait_for_everyone()

    def sum(self, value: float) -> float:
        """Sum of a float over processes (for logging global quantities)."""
        import torch  # noqa: PLC0415

        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        return float(self.acc.reduce(t, reduction="sum").item())

    def backward(self, loss) -> None:
        self.acc.backward(loss)

    def clip_grad_norm(self, model, max_norm: float) -> None:
        """Global gradient-norm clip that is also right for sharded models (FSDP, DeepSpeed)."""
        self.acc.clip_grad_norm_(model.parameters(), max_norm)
