"""The ceiling: a bare ASGI app doing the same JSON work as the entry scripts.

It parses the body with the same ``json.loads``, computes the same thing
(row sums, or the Ridge model's predictions) and writes the answer with
orjson, as modelform does, but has nothing else: no routing beyond one
path, no request ids, no logs, no metrics, no timeout. Served by uvicorn
(httptools, uvloop) with the same number of workers.

``BENCH_CASE`` is ``rowsum`` or ``ridge``; ``AZUREML_MODEL_DIR`` holds
``ridge.pkl`` for the latter.
"""

import json
import os

import orjson

CASE = os.environ.get("BENCH_CASE", "rowsum")

if CASE == "ridge":
    import joblib
    import numpy as np

    _model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "ridge.pkl"))

    def compute(body):
        return _model.predict(np.array(json.loads(body)["data"])).tolist()

else:

    def compute(body):
        return [sum(row) for row in json.loads(body)["data"]]


_HEADERS = [(b"content-type", b"application/json")]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["path"] == "/score" and scope["method"] == "POST":
        status, payload = 200, orjson.dumps(compute(body.decode("utf-8")))
    else:
        status, payload = 200, b"Healthy"
    headers = [*_HEADERS, (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
