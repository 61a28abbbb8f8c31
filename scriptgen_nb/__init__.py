"""scriptgen_nb: run large batches of Gemini generation requests from Jupyter, Python or a terminal.

    import scriptgen_nb as sg
    requests = sg.create_batch_requests(["Write a 60-second script about tides"], temperature=0.7)
    results = sg.batch_generate(requests)            # or: await sg.abatch_generate(requests)
    results.to_dataframe()

Names are imported on first use (PEP 562), so `import scriptgen_nb.engine...` or
`import scriptgen_nb.emulator` loads only that layer: the engine never drags in the facade, and
the emulator never loads the engine it is there to test.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "ResultList": "results",
    "abatch_generate": "api",
    "batch_plan": "api",
    "cancel_batch_job": "api",
    "list_batch_jobs": "api",
    "resume_batch_job": "api",
    "submit_batch_job": "api",
    "BatchApiSettings": "batch_api.jobs",
    "BatchJobHandle": "batch_api.run",
    "BatchPlan": "batch_api.plan",
    "aiter_generate": "api",
    "batch_generate": "api",
    "create_batch_requests": "api",
    "iter_generate": "api",
    "CallStore": "store",
    "CallLogFailed": "store",
    "Emulator": "emulator",
    "EmulatorConfig": "emulator",
    "FakeBackend": "engine.backend",
    "GeminiBackend": "engine.backend",
    "BatchApiWaitFailed": "engine.errors",
    "BatchInterrupted": "engine.errors",
    "ConfigurationError": "engine.errors",
    "EndpointGoneError": "engine.errors",
    "InvalidApiKeyError": "engine.errors",
    "MissingApiKeyError": "engine.errors",
    "RequestRefused": "engine.errors",
    "ScriptgenError": "engine.errors",
    "ServiceRefusedError": "engine.errors",
    "UnknownModelError": "engine.errors",
    "ModelCatalogue": "engine.models",
    "ModelSpec": "engine.models",
    "default_catalogue": "engine.models",
    "seed_models": "engine.models",
    "seed_concurrency": "engine.policy",
    "BatchEngine": "engine.runner",
    "CancelToken": "engine.runner",
    "Failure": "engine.values",
    "GenerationRequest": "engine.values",
    "Result": "engine.values",
    "Usage": "engine.values",
    "chapters_frame": "projects.export",
    "export_json": "projects.export",
    "export_markdown": "projects.export",
    "project_status": "projects.export",
    "scripts_frame": "projects.export",
    "ChapterImagePrompts": "projects.scripts",
    "ImagePrompt": "projects.scripts",
    "ImagePromptRun": "projects.scripts",
    "Outline": "projects.scripts",
    "OutlineRun": "projects.scripts",
    "Scene": "projects.scripts",
    "Script": "projects.scripts",
    "ScriptRun": "projects.scripts",
    "create_project": "projects.scripts",
    "generate_image_prompts": "projects.scripts",
    "generate_outline": "projects.scripts",
    "generate_scripts": "projects.scripts",
    "generate_scripts_batch": "projects.scripts",
    "import_outline": "projects.scripts",
    "regenerate": "projects.scripts",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'scriptgen_nb' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext scriptgen_nb`: register the magics, the `--await` cell transformer, and the
    session's endpoint as the one Python calls in this kernel use when they name none."""
    from .endpoints import use_session
    from .jupyter.endpoint import SESSION
    from .jupyter.magic import ScriptgenMagics, await_transformer

    use_session(SESSION)
    ipython.register_magics(ScriptgenMagics)
    transformers = ipython.input_transformers_cleanup
    if await_transformer not in transformers:
        transformers.append(await_transformer)


def unload_ipython_extension(ipython: Any) -> None:
    """`%reload_ext` calls this first: take the transformer, the magics and the session's
    endpoint away again (the emulator keeps running until `%scriptgen emulator stop`)."""
    from .endpoints import use_session
    from .jupyter.magic import await_transformer

    use_session(None)
    if await_transformer in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.remove(await_transformer)
    for kind in ("line", "cell"):
        ipython.magics_manager.magics[kind].pop("scriptgen", None)


if TYPE_CHECKING:
    from .api import (
        abatch_generate,
        aiter_generate,
        batch_generate,
        batch_plan,
        cancel_batch_job,
        create_batch_requests,
        iter_generate,
        list_batch_jobs,
        resume_batch_job,
        submit_batch_job,
    )
    from .batch_api.jobs import BatchApiSettings
    from .batch_api.plan import BatchPlan
    from .batch_api.run import BatchJobHandle
    from .emulator import Emulator, EmulatorConfig
    from .engine.backend import FakeBackend, GeminiBackend
    from .engine.errors import (
        BatchApiWaitFailed,
        BatchInterrupted,
        ConfigurationError,
        EndpointGoneError,
        InvalidApiKeyError,
        MissingApiKeyError,
        ScriptgenError,
        ServiceRefusedError,
        UnknownModelError,
    )
    from .engine.models import ModelCatalogue, ModelSpec, default_catalogue, seed_models
    from .engine.policy import seed_concurrency
    from .engine.runner import BatchEngine, CancelToken
    from .engine.values import Failure, GenerationRequest, Result, Usage
    from .projects.export import (
        chapters_frame,
        export_json,
        export_markdown,
        project_status,
        scripts_frame,
    )
    from .projects.scripts import (
        ChapterImagePrompts,
        ImagePrompt,
        ImagePromptRun,
        Outline,
        OutlineRun,
        Scene,
        Script,
        ScriptRun,
        create_project,
        generate_image_prompts,
        generate_outline,
        generate_scripts,
        generate_scripts_batch,
        import_outline,
        regenerate,
    )
    from .results import ResultList
    from .store import CallLogFailed, CallStore
