"""Reports model specs that cannot be used, as this file's Airflow import error.

``retrain.py`` builds a DAG for every valid spec and skips the others, so one bad spec never hides
the other models' DAGs; this file makes the bad ones visible, naming each file, field and problem.
"""

from __future__ import annotations

from model_lifecycle.specs import load_catalog


class InvalidModelSpecs(ValueError):
    pass


_errors = load_catalog().errors
if _errors:
    raise InvalidModelSpecs(
        f"{len(_errors)} model spec(s) are invalid; their retrain DAGs are not loaded:\n"
        + "\n".join(f"- {error}" for error in _errors)
    )
