"""The embedded default stack, for ``make demo``, ``make airflow`` and the tests: a real MLflow server
process (SQLite, local artifacts), a local GitOps repository, a reviewer, and Airflow on SQLite.

Importing it puts ``plugins/`` on ``sys.path``, as Airflow does for its components, so the package (and
its ``PROJECT_ROOT``) can be imported the same way here.
"""

import sys
from pathlib import Path

_PLUGINS = str(Path(__file__).resolve().parent.parent / "plugins")
if _PLUGINS not in sys.path:
    sys.path.insert(0, _PLUGINS)
