"""Where the published API descriptions live (GitHub OpenAPI, KServe CRD, Compose schema).

They are vendored in ``tests/specs/`` (sources, versions and licences in its README; ``refresh.py``
there renews them from upstream). A test that needs them fails rather than skip: without them nothing
checks the wire shapes.
"""

from __future__ import annotations

from pathlib import Path

from model_lifecycle.specs import PROJECT_ROOT


def api_specs_dir() -> Path:
    specs = PROJECT_ROOT / "tests" / "specs"
    if not (specs / "kserve").is_dir():
        raise FileNotFoundError(f"the published API descriptions are missing from {specs}")
    return specs
