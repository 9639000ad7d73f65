"""What a distributed strategy divides among the training processes, for the memory plan.

One row per strategy, as data: DeepSpeed ZeRO-2 divides gradients and optimizer states over the processes, ZeRO-3
and FSDP (full shard) the weights too; DDP and a single process divide nothing. The count is the strategy's world
size (distributed.num_processes, over all machines). A sharded model is gathered a layer or two at a time while it
computes (`gathered_layers`), and an optimizer under DeepSpeed keeps float32 master weights beside its two moments
(`optimizer_bytes`): the 16 bytes per parameter of the ZeRO paper (Rajbhandari et al. 2020, section 3) for a model
trained in 16 bit, against torch's AdamW in the weights' own precision without DeepSpeed.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import OmegaConf

ZERO_OPTIMIZER_BYTES = 4 + 4 + 4      # DeepSpeed: float32 master weights and Adam's two float32 moments
GATHERED_LAYERS = 2                   # ZeRO-3 / FSDP: the layer computing and the one prefetched


@dataclass(frozen=True)
class Sharding:
    strategy: str           # none | ddp | deepspeed_zero2 | deepspeed_zero3 | fsdp (distributed.name)
    world: int              # processes the states are divided over
    weights: int = 1        # the divisors: 1 = every process holds all of it
    gradients: int = 1
    optimizer: int = 1
    deepspeed: bool = False

    @property
    def sharded(self) -> bool:
        return max(self.weights, self.gradients, self.optimizer) > 1

    def describe(self) -> str:
        if not self.sharded:
            return f"{self.strategy}: nothing sharded" + (f" ({self.world} processes)" if self.world > 1 else "")
        parts = [name for name, n in (("weights", self.weights), ("gradients", self.gradients),
                                      ("optimizer states", self.optimizer)) if n > 1]
        return f"{self.strategy}: {', '.join(parts)} divided over {self.world} processes"

    def as_dict(self) -> dict:
        return {"strategy": self.strategy, "world": self.world, "weights": self.weights, "gradients": self.gradients,
                "optimizer": self.optimizer}


def sharding_of(cfg) -> Sharding:
    """The sharding of this run's distributed strategy (conf/distributed/*.yaml)."""
    name = str(OmegaConf.select(cfg, "distributed.name", default="none") or "none")
    world = int(OmegaConf.select(cfg, "distributed.num_processes", default=1) or 1)
    if name == "none" or world < 2:
        return Sharding(name, max(world, 1))
    kind = str(OmegaConf.select(cfg, "distributed.accelerate.distributed_type", default="") or "").upper()
    if kind == "DEEPSPEED":
        stage = int(OmegaConf.select(cfg, "distributed.accelerate.deepspeed_config.zero_stage", default=0) or 0)
        return Sharding(name, world, weights=world if stage >= 3 else 1, gradients=world if stage >= 2 else 1,
                        optimizer=world if stage >= 1 else 1, deepspeed=True)
    if kind == "FSDP":
        fsdp = OmegaConf.select(cfg, "distributed.accelerate.fsdp_config", default=None) or {}
        keeps_weights = (fsdp.get("fsdp_reshard_after_forward") is False
                         or str(fsdp.get("fsdp_sharding_strategy", "")).upper() in ("SHARD_GRAD_OP", "NO_SHARD"))
        return Sharding(name, world, weights=1 if keeps_weights else world, gradients=world, optimizer=world)
    return Sharding(name, world)


def optimizer_bytes(cfg, sharding: Sharding, dtype_bytes: int) -> float:
    """Bytes per trained parameter of the optimizer: DeepSpeed's float32 master weights + moments, else AdamW's two
    moments in the parameters' precision (8-bit optimizers: one byte each)."""
    optim = str(OmegaConf.select(cfg, "trainer.optim", default="") or "")
    if "8bit" in optim:
        return 2.0
    if sharding.deepspeed:
        return float(ZERO_OPTIMIZER_BYTES)
    if "sgd" in optim:
        return float(dtype_bytes)
    return 2.0 * dtype_bytes
