"""fakescope as a web service: a REST API (FastAPI) and a web page, sharing one loaded Detector."""
from __future__ import annotations

from fakescope.serve.app import app_from_env, create_app, run
from fakescope.serve.settings import Settings

__all__ = ["Settings", "app_from_env", "create_app", "run"]
