"""Operators: the general gOctConv and its CBR (conv, BatchNorm, PReLU) wrapper."""
from csnet.nn.goct import GOctCBR, GOctConv, Link, MultiScale, ScaleBNPReLU, all_links, same_scale_links

__all__ = ["GOctConv", "GOctCBR", "ScaleBNPReLU", "MultiScale", "Link", "all_links", "same_scale_links"]
