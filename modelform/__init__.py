"""modelform: Terraform-style declarative deployment of machine-learning models.

The public facade. Internals live in ``modelform.engine``,
``modelform.providers``, ``modelform.state`` and ``modelform.runtime``.
"""

from __future__ import annotations

__version__ = "0.1.0"
