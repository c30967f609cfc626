"""CSNet networks: the ChannelConfig, the model family, its registry and model files."""
from csnet.models.config import BlockConfig, ChannelConfig, FusionConfig, csnet_channels
from csnet.models.csnet import CSNet, CrossStageFusion, ILBlock, learned_config
from csnet.models.hub import DEFAULT_MODEL, ModelFileError, create_model, load_model, read_metadata, save_model
from csnet.models.registry import is_model, list_models, register_model

__all__ = [
    "BlockConfig", "ChannelConfig", "FusionConfig", "csnet_channels", "learned_config",
    "CSNet", "CrossStageFusion", "ILBlock",
    "create_model", "list_models", "load_model", "save_model", "read_metadata", "is_model", "register_model",
    "ModelFileError", "DEFAULT_MODEL",
]
