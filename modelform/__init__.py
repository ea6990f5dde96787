"""modelform: Terraform-style declarative deployment of machine-learning models.

The public facade. Internals live in ``modelform.engine``,
``modelform.providers``, ``modelform.state`` and ``modelform.runtime``.
"""

from __future__ import annotations

import pkgutil

# In a checkout the subpackages live beside this folder (engine/, …) and reach
# the import system through the install (a strict editable install's link
# tree). ``python -m`` in the checkout's root finds this folder first, so
# look for the other ``modelform`` folders on sys.path too (docs/contributing.md).
__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = "0.1.0"
