"""``python -m modelform.runtime.functions APP_DIR --host 127.0.0.1 --port P``"""

from __future__ import annotations

from modelform.runtime.functions import main

raise SystemExit(main())
