"""csnet: CSNet salient object detection with ~100K parameters (Gao et al., ECCV 2020, arXiv 2003.05643).

>>> import csnet
>>> model = csnet.create_model("csnet_l_x2")          # doctest: +SKIP
>>> csnet.list_models()                               # doctest: +SKIP
>>> png = csnet.remove(open("photo.jpg", "rb").read())  # doctest: +SKIP  rembg-style: bytes in, PNG out
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "list_models", "load_model", "save_model", "Predictor", "remove"]


def __getattr__(name: str):
    # Heavy imports (torch) happen on first use, so `csnet --version` stays instant.
    if name in ("create_model", "list_models", "load_model", "save_model"):
        from csnet import models

        return getattr(models, name)
    if name == "Predictor":
        from csnet.infer.predictor import Predictor

        return Predictor
    if name == "remove":
        from csnet.infer.remove import remove

        return remove
    raise AttributeError(f"module 'csnet' has no attribute {name!r}")
