"""Learnable channels: dynamic weight decay (and the pruning that follows it)."""
from csnet.channels.dwd import DecayTarget, DynamicWeightDecay, batchnorm_targets, csnet_targets

__all__ = ["DecayTarget", "DynamicWeightDecay", "batchnorm_targets", "csnet_targets"]
