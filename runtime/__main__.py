"""``python -m modelform.runtime --entry-script score.py ...``"""

from __future__ import annotations

from modelform.runtime import main

raise SystemExit(main())
