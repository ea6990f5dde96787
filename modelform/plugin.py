"""The public module for provider plugins: everything a target kind needs.

A plugin imports from here and nothing else of modelform, so the engine's
internals can change without breaking it. It registers its provider class
in its own package metadata::

    [project.entry-points."modelform.providers"]
    edge = "mf_edge:EdgeProvider"

and sets ``protocol_version = PROTOCOL_VERSION`` (the engine refuses a
provider written for another version, naming it). See docs/plugins.md.
"""

from __future__ import annotations

from modelform.engine.decide import changed_keys
from modelform.engine.diagnostics import Diagnostic, DiagnosticError, Pos
from modelform.engine.kinds import shared_options
from modelform.engine.provider import (
    PROTOCOL_VERSION,
    Action,
    Applied,
    ApplyRequest,
    Cancelled,
    Check,
    Child,
    Context,
    Proposal,
    Provider,
    ProviderError,
    Resource,
    ServiceStatus,
    coming_up,
)
from modelform.engine.servicetest import check_test_response, http_check, readiness
from modelform.engine.values import UNKNOWN, is_known

__all__ = [
    "PROTOCOL_VERSION",
    "UNKNOWN",
    "Action",
    "Applied",
    "ApplyRequest",
    "Cancelled",
    "Check",
    "Child",
    "Context",
    "Diagnostic",
    "DiagnosticError",
    "Pos",
    "Proposal",
    "Provider",
    "ProviderError",
    "Resource",
    "ServiceStatus",
    "changed_keys",
    "check_test_response",
    "coming_up",
    "http_check",
    "is_known",
    "readiness",
    "shared_options",
]
