"""Runs the backend conformance suite (conformance.py) against every backend in conftest."""

from __future__ import annotations

from .conformance import *  # noqa: F403
