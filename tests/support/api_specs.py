"""Where the published API descriptions live (GitHub OpenAPI, KServe CRD, Compose schema).

They sit beside the checkout in ``../shared/specs``; ``$API_SPECS_DIR`` points elsewhere. A test that
needs them fails with this message rather than skip: without them nothing checks the wire shapes.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def api_specs_dir() -> Path:
    candidates = [Path(os.environ["API_SPECS_DIR"])] if os.environ.get("API_SPECS_DIR") else []
    candidates += [REPO.parent / "shared" / "specs", Path("/work/shared/specs")]
    for candidate in candidates:
        if (candidate / "kserve").is_dir():
            return candidate
    raise FileNotFoundError(
        f"the published API descriptions are not in any of {[str(c) for c in candidates]}; "
        "set API_SPECS_DIR to the folder holding github/, kserve/ and compose/"
    )
