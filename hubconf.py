"""torch.hub entrypoints: ``torch.hub.load("<owner>/csnet", "csnet_l_x2")``."""
dependencies = ["torch", "numpy", "safetensors"]

from csnet.models import create_model as _create_model  # noqa: E402
from csnet.models import list_models as _list_models  # noqa: E402


def _entrypoint(name):
    def build(pretrained: bool = False, **kwargs):
        return _create_model(name, pretrained=pretrained, **kwargs)

    build.__name__ = name
    build.__doc__ = f"CSNet model {name!r} (see csnet.list_models())."
    return build


for _name in _list_models():
    globals()[_name] = _entrypoint(_name)
