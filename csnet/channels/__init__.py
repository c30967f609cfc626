"""Learnable channels: dynamic weight decay, and the threshold pruning that follows it."""
from csnet.channels.dwd import DecayTarget, DynamicWeightDecay, batchnorm_targets, csnet_targets
from csnet.channels.prune import PruneError, PruneReport, prune_model

__all__ = ["DecayTarget", "DynamicWeightDecay", "batchnorm_targets", "csnet_targets",
           "PruneError", "PruneReport", "prune_model"]
