"""a2gen_hf: A2Gen (Action-Aware Generative Sequence Network) the Hugging Face way."""

from transformers import AutoTokenizer

from .auto import AutoModelForActionGeneration
from .configuration_a2gen import ECOMMERCE_ACTIONS, SHORT_VIDEO_ACTIONS, A2GenConfig, A2GenConfigError
from .configuration_baselines import MMoEConfig, MultiTaskBaselineConfig, PLEConfig
from .generation_a2gen import A2GenBeamGenerateOutput, A2GenGenerateOutput
from .modeling_a2gen import (
    A2GenActionGenerationOutput,
    A2GenActionPrediction,
    A2GenForActionGeneration,
    A2GenModel,
    A2GenModelOutput,
    A2GenPreTrainedModel,
    ContextAwareAttention,
    ExplicitActionGenerator,
    HierarchicalSequenceEncoder,
    ImplicitActionGenerator,
)
from .modeling_baselines import (
    MMoEForActionPrediction,
    MultiTaskBaselineOutput,
    MultiTaskBaselinePreTrainedModel,
    PLEForActionPrediction,
)
from .pipelines import ActionGenerationPipeline, ActionRequestError, generate_timelines
from .ranking import A2GenRanker, UserState
from .tokenization_a2gen import A2GenActionTokenizer, TimelineError, UnknownActionError
from .version import __version__

# AutoTokenizer finds the tokenizer by config class or by the saved "tokenizer_class"; saved copies carry an auto_map.
AutoTokenizer.register(A2GenConfig, tokenizer_class=A2GenActionTokenizer)
A2GenActionTokenizer.register_for_auto_class()

__all__ = [
    "MMoEConfig",
    "MMoEForActionPrediction",
    "MultiTaskBaselineConfig",
    "MultiTaskBaselineOutput",
    "MultiTaskBaselinePreTrainedModel",
    "PLEConfig",
    "PLEForActionPrediction",
    "A2GenActionGenerationOutput",
    "ActionGenerationPipeline",
    "ActionRequestError",
    "A2GenActionPrediction",
    "A2GenActionTokenizer",
    "A2GenBeamGenerateOutput",
    "A2GenForActionGeneration",
    "A2GenGenerateOutput",
    "A2GenModel",
    "A2GenModelOutput",
    "A2GenPreTrainedModel",
    "A2GenRanker",
    "AutoModelForActionGeneration",
    "ContextAwareAttention",
    "ExplicitActionGenerator",
    "HierarchicalSequenceEncoder",
    "ImplicitActionGenerator",
    "A2GenConfig",
    "A2GenConfigError",
    "ECOMMERCE_ACTIONS",
    "SHORT_VIDEO_ACTIONS",
    "TimelineError",
    "UnknownActionError",
    "UserState",
    "generate_timelines",
    "__version__",
]
