"""Auto-class registration: ``import a2gen_hf`` makes AutoConfig / AutoModel / AutoTokenizer know A2Gen."""

from __future__ import annotations

from collections import OrderedDict

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
from transformers.models.auto.auto_factory import _BaseAutoModelClass, _LazyAutoMapping

from .configuration_a2gen import A2GenConfig
from .modeling_a2gen import A2GenForActionGeneration, A2GenModel


class AutoModelForActionGeneration(_BaseAutoModelClass):
    """Task auto class: ``AutoModelForActionGeneration.from_pretrained(path)`` builds the model with its generator."""

    _model_mapping = _LazyAutoMapping(OrderedDict(), OrderedDict())


AutoConfig.register(A2GenConfig.model_type, A2GenConfig, exist_ok=True)
AutoModel.register(A2GenConfig, A2GenModel, exist_ok=True)
AutoModelForActionGeneration.register(A2GenConfig, A2GenForActionGeneration, exist_ok=True)
# transformers' auto_map only knows its own auto classes; the generative model sits under AutoModelForCausalLM
# there (it generates sequences through generate()), so register it there too for the same behaviour locally.
AutoModelForCausalLM.register(A2GenConfig, A2GenForActionGeneration, exist_ok=True)
# A pushed checkpoint carries this code (auto_map), so it loads with trust_remote_code=True without the package.
A2GenConfig.register_for_auto_class()
A2GenModel.register_for_auto_class("AutoModel")
A2GenForActionGeneration.register_for_auto_class("AutoModelForCausalLM")
