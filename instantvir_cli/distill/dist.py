"""Processes, devices and parallel wrappers for the trainer.

`torchrun --nproc-per-node N -m instantvir_cli distill ...` sets RANK / WORLD_SIZE /
LOCAL_RANK; `init_distributed` then joins the process group (gloo on CPU, NCCL on CUDA). A
plain `vir distill` is the same code with world size 1: `wrap` returns the module itself and
every collective below is a no-op.

Parallelism: DDP for every trained module, or FSDP2 (`torch.distributed.fsdp.fully_shard`,
one unit per transformer block, then the whole model) for the DiTs when `run.parallel =
"fsdp"`. State dicts leave through `full_state_dict` / `optimizer_state`, which gather FSDP
shards (collectives: every rank calls them) and are plain CPU tensors for DDP.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
import warnings
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.checkpoint import checkpoint

from instantvir_cli.errors import ConfigError


@dataclass
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False                    # this process started the group (and ends it)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average floats over processes (a collective: every rank passes the same keys)."""
        if not self.active or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=self.reduce_device)
        dist.all_reduce(t)
        return {k: float(v) / self.world for k, v in zip(keys, t.tolist())}

    def any(self, flag: bool) -> bool:
        """True on every rank if it is True on any (e.g. a rank failed)."""
        if not self.active:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.reduce_device)
        dist.all_reduce(t)
        return bool(t.item() > 0)

    def broadcast(self, obj):
        """Rank 0's `obj` on every rank."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    @property
    def reduce_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("run.device: cuda requested but CUDA is not available")
    return torch.device("cuda", local_rank)


def init_distributed(device: str) -> DistEnv:
    """Join torchrun's process group if there is one; otherwise a world of one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    env = DistEnv(rank, world, local, dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=30))
        env.owns_group = True
    return env


def shutdown(env: DistEnv) -> None:
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def fsdp_available() -> bool:
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError:
        return False
    return True


def enable_grad_checkpointing(dit: nn.Module) -> None:
    """Recompute each transformer block in backward (its activations are not kept).

    Replaces the blocks' bound `forward` by a checkpointed one, so parameter names and state
    dicts stay as they are.
    """
    for blk in dit.blocks:
        if not getattr(blk, "_vir_checkpointed", False):
            blk.forward = functools.partial(checkpoint, blk.forward, use_reentrant=False)
            blk._vir_checkpointed = True


def wrap(module: nn.Module, env: DistEnv, shard: bool = False) -> nn.Module:
    """The module as it trains: itself (one process), DDP, or FSDP2 (`shard`, DiTs only)."""
    if not env.active:
        return module
    if shard:
        if not fsdp_available():
            raise ConfigError("run.parallel = 'fsdp' needs torch.distributed.fsdp.fully_shard (torch >= 2.6)")
        from torch.distributed.fsdp import fully_shard

        for blk in module.blocks:
            fully_shard(blk)
        fully_shard(module)
        return module
    # the VAE's depthwise convs get channels-last weight gradients: harmless, but DDP warns each step
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return DDP(module, device_ids=[env.device.index] if env.device.type == "cuda" else None)


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, DDP) else module


def is_sharded(module: nn.Module) -> bool:
    return any(type(p).__name__ == "DTensor" for p in module.parameters())


@contextlib.contextmanager
def no_sync(module: nn.Module, skip: bool):
    """Skip the gradient all-reduce of this backward (all micro-steps but the last)."""
    if skip and isinstance(module, DDP):
        with module.no_sync():
            yield
    elif skip and is_sharded(module):
        module.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            module.set_requires_gradient_sync(True)
    else:
        yield


def full_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state dict on the CPU (gathers FSDP shards: every rank calls it)."""
    module = unwrap(module)
    if is_sharded(module):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def load_full_state_dict(module: nn.Module, sd: dict[str, torch.Tensor]) -> None:
    module = unwrap(module)
    if is_sharded(module):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(module, sd, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=False))
    else:
        module.load_state_dict(sd, strict=True)


def optimizer_state(module: nn.Module, optim: torch.optim.Optimizer) -> dict:
    module = unwrap(module)
    if is_sharded(module):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(module, optim, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return optim.state_dict()


def load_optimizer_state(module: nn.Module, optim: torch.optim.Optimizer, sd: dict) -> None:
    module = unwrap(module)
    if is_sharded(module):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(module, optim, sd, options=StateDictOptions(full_state_dict=True))
    else:
        optim.load_state_dict(sd)


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if type(t).__name__ == "DTensor" else t


class EMA:
    """Exponential moving average of a module's parameters, with the usual warm-up:
    decay_n = min(decay, (1 + n) / (10 + n)) at the n-th update (so short runs average too)."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.shadow = {n: p.detach().clone() for n, p in unwrap(module).named_parameters()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for n, p in unwrap(module).named_parameters():
            self.shadow[n].lerp_(p.detach(), 1.0 - d)
        self.updates += 1

    def full_state_dict(self, module: nn.Module) -> dict[str, torch.Tensor]:
        """The averaged weights as a full state dict (buffers from `module`); gathers shards."""
        sd = {}
        for n, t in self.shadow.items():
            t = t.full_tensor() if type(t).__name__ == "DTensor" else t
            sd[n] = t.detach().to("cpu", copy=True)
        for n, b in unwrap(module).named_buffers():
            sd[n] = b.detach().to("cpu", copy=True)
        return sd

    def state(self, module: nn.Module) -> dict:
        return {"updates": self.updates, "weights": self.full_state_dict(module)}

    @torch.no_grad()
    def load(self, state: dict) -> None:
        self.updates = int(state["updates"])
        for n, t in self.shadow.items():
            src = state["weights"][n]
            if type(t).__name__ == "DTensor":
                from torch.distributed.tensor import distribute_tensor

                src = distribute_tensor(src.to(t.device_mesh.device_type), t.device_mesh, t.placements)
            t.copy_(src)


__all__ = ["EMA", "DistEnv", "enable_grad_checkpointing", "fsdp_available", "full_state_dict", "init_distributed",
           "is_sharded", "load_full_state_dict", "load_optimizer_state", "no_sync", "optimizer_state",
           "resolve_device", "shutdown", "unwrap", "wrap"]
