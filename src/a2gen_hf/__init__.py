"""a2gen_hf: A2Gen (Action-Aware Generative Sequence Network) the Hugging Face way."""

from .configuration_a2gen import ECOMMERCE_ACTIONS, SHORT_VIDEO_ACTIONS, A2GenConfig, A2GenConfigError
from .version import __version__

__all__ = [
    "A2GenConfig",
    "A2GenConfigError",
    "ECOMMERCE_ACTIONS",
    "SHORT_VIDEO_ACTIONS",
    "__version__",
]
