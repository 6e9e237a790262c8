"""a2gen_hf: A2Gen (Action-Aware Generative Sequence Network) the Hugging Face way.

The package imports lazily, so that ``a2gen --help`` does not load torch: the first use of any name below (``from
a2gen_hf import A2GenConfig``, ``a2gen_hf.A2GenConfig``) imports the modules and registers A2Gen, MMoE and PLE with
transformers' auto classes and the ``"action-generation"`` pipeline task. ``import a2gen_hf`` does that at once when
transformers is already imported, and otherwise as soon as transformers is (an import hook), so the order of the
two imports does not matter; importing one of the package's modules first (``from a2gen_hf.modeling_a2gen import
...``) registers once it has finished; :func:`register` does it explicitly.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import TYPE_CHECKING, Any

from .version import __version__

# public name -> the submodule that defines it
_NAMES = {
    "AutoModelForActionGeneration": "auto",
    "ECOMMERCE_ACTIONS": "configuration_a2gen",
    "SHORT_VIDEO_ACTIONS": "configuration_a2gen",
    "A2GenConfig": "configuration_a2gen",
    "A2GenConfigError": "configuration_a2gen",
    "MMoEConfig": "configuration_baselines",
    "MultiTaskBaselineConfig": "configuration_baselines",
    "PLEConfig": "configuration_baselines",
    "A2GenBeamGenerateOutput": "generation_a2gen",
    "A2GenGenerateOutput": "generation_a2gen",
    "A2GenActionGenerationOutput": "modeling_a2gen",
    "A2GenActionPrediction": "modeling_a2gen",
    "A2GenForActionGeneration": "modeling_a2gen",
    "A2GenModel": "modeling_a2gen",
    "A2GenModelOutput": "modeling_a2gen",
    "A2GenPreTrainedModel": "modeling_a2gen",
    "ContextAwareAttention": "modeling_a2gen",
    "ExplicitActionGenerator": "modeling_a2gen",
    "HierarchicalSequenceEncoder": "modeling_a2gen",
    "ImplicitActionGenerator": "modeling_a2gen",
    "MMoEForActionPrediction": "modeling_baselines",
    "MultiTaskBaselineOutput": "modeling_baselines",
    "MultiTaskBaselinePreTrainedModel": "modeling_baselines",
    "PLEForActionPrediction": "modeling_baselines",
    "ActionGenerationPipeline": "pipelines",
    "ActionRequestError": "pipelines",
    "generate_timelines": "pipelines",
    "A2GenRanker": "ranking",
    "UserState": "ranking",
    "A2GenActionTokenizer": "tokenization_a2gen",
    "TimelineError": "tokenization_a2gen",
    "UnknownActionError": "tokenization_a2gen",
}
_registered = False
_registering = False


def register() -> None:
    """Import the models and register them with transformers' auto classes (``AutoConfig``, ``AutoModel``,
    ``AutoTokenizer``, ``AutoModelForActionGeneration``) and the ``"action-generation"`` pipeline task. Idempotent;
    the first use of any name of the package calls it."""
    global _registered, _registering
    if _registered or _registering:
        return
    _registering = True
    try:
        from transformers import AutoTokenizer

        # their imports register them; hub's sets the models' push_to_hub, which writes the A2Gen model card
        from . import auto, hub, modeling_baselines, pipelines  # noqa: F401
        from .configuration_a2gen import A2GenConfig
        from .tokenization_a2gen import A2GenActionTokenizer

        # AutoTokenizer finds the tokenizer by config class or by the saved "tokenizer_class"; saved copies carry
        # an auto_map.
        AutoTokenizer.register(A2GenConfig, tokenizer_class=A2GenActionTokenizer, exist_ok=True)
        A2GenActionTokenizer.register_for_auto_class()
        _registered = True
    finally:
        _registering = False
    for finder in [finder for finder in sys.meta_path if isinstance(finder, _RegisterWhenTransformersLoads)]:
        sys.meta_path.remove(finder)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    register()
    value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_NAMES})


def _package_module_initializing(besides: str | None = None) -> bool:
    """Whether one of this package's modules (other than ``besides``) is being imported right now (its code has not
    finished running)."""
    return any(
        getattr(getattr(module, "__spec__", None), "_initializing", False)
        for name, module in list(sys.modules.items())
        if name.startswith(f"{__name__}.") and name != besides
    )


def _register_unless_initializing(module_name: str | None = None) -> None:
    """:func:`register` once transformers is loaded and no module of the package but ``module_name`` (the one whose
    code just finished) is half-imported: registering in the middle of one would import it circularly."""
    if _registered or "transformers" not in sys.modules or _package_module_initializing(besides=module_name):
        return
    try:
        register()
    except Exception as error:  # the import that triggered it must still succeed
        import warnings

        warnings.warn(f"a2gen_hf could not register with transformers: {error!r}", stacklevel=3)


class _RegisterWhenTransformersLoads(importlib.abc.MetaPathFinder):
    """
    Imported before transformers, the package stays light (``a2gen --help`` loads neither torch nor transformers);
    this finder waits for ``import transformers`` and registers the package right after transformers' own module
    has run, so ``import a2gen_hf`` then ``from transformers import pipeline`` works as in the other order. Where
    one of the package's own modules imports transformers (``from a2gen_hf.modeling_a2gen import ...`` first), it
    registers when the outermost of the package's modules being imported has finished. It removes itself once the
    package is registered.
    """

    _finding = False

    def find_spec(self, name, path, target=None):
        if self._finding or _registered or not (name == "transformers" or name.startswith(f"{__name__}.")):
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._finding = False
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            load = spec.loader.exec_module
            own = None if name == "transformers" else name

            def exec_module(module):
                load(module)
                _register_unless_initializing(own)

            spec.loader.exec_module = exec_module
        return spec


if "transformers" in sys.modules:
    register()
elif not any(isinstance(finder, _RegisterWhenTransformersLoads) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenTransformersLoads())

if TYPE_CHECKING:
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
