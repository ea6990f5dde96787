"""``python -m modelform.runtime.functions APP_DIR --host 127.0.0.1 --port P``"""

from __future__ import annotations

import os
import sys

from modelform.runtime.functions import main

code = main()
sys.stdout.flush()
sys.stderr.flush()
# Threads may still sit in a user's call that never returns (their blob claims and queue
# messages were released at the stop): leave without waiting for them, as the real host
# ends its worker process.
os._exit(code)
