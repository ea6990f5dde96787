"""Start azmlinfsrv exactly as its console script does, but bound to 127.0.0.1.

azureml-inference-server-http hard-codes host 0.0.0.0 (constants.DEFAULT_HOST,
copied into amlserver by ``from .constants import *``); everything else
(gunicorn sync workers, its arguments, logging) is left as shipped.
Arguments are azmlinfsrv's own (--entry_script, --model_dir, --port,
--worker_count).
"""

import sys

from azureml_inference_server_http import amlserver

amlserver.DEFAULT_HOST = "127.0.0.1"
sys.argv = ["azmlinfsrv", *sys.argv[1:]]
amlserver.run()
