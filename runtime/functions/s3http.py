"""A lean S3 client for the blob trigger's hot requests: signed HTTP, one connection a thread.

boto3 spends a few milliseconds of CPU on each call (request model, event
hooks, response parsing); the blob trigger makes four calls a blob and
lists its prefix, so on a small machine that was most of the host's CPU.
This client makes the same requests with ``http.client``: one keep-alive
connection per thread, AWS Signature V4 signed here, ListObjectsV2 parsed
with a few regular expressions. botocore still finds the credentials
(environment, profile, SSO, instance metadata...), so whatever the user's
AWS configuration names keeps working; refreshable credentials are asked
for before every request, as botocore does.

It answers ``Response`` (status, headers, body) and raises ``S3HttpError``
only when the endpoint cannot be reached after the retries; what a status
means is the caller's business (``stores.S3Store``). A request that fails
on a connection the server has closed is sent again once on a new one;
server errors (500, 503) and network errors are tried ``ATTEMPTS`` times in
all, as boto3's standard retry mode does.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import re
import threading
import time
from dataclasses import dataclass
from html import unescape
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit

ATTEMPTS = 3
BACKOFF_S = (0.05, 0.2)
TIMEOUT_S = 30.0
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_RETRY_STATUS = frozenset({500, 502, 503, 504})


class S3HttpError(Exception):
    """The endpoint could not be reached (after the retries); one line."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def error_code(self) -> str:
        found = re.search(rb"<Code>([^<]*)</Code>", self.body)
        return found.group(1).decode("utf-8", "replace") if found else ""

    def error_message(self) -> str:
        found = re.search(rb"<Message>([^<]*)</Message>", self.body)
        return unescape(found.group(1).decode("utf-8", "replace")) if found else ""


@dataclass(frozen=True)
class ListedObject:
    key: str
    etag: str  # unquoted
    size: int


@dataclass(frozen=True)
class ListPage:
    objects: list[ListedObject]
    truncated: bool
    token: str | None


_CONTENTS = re.compile(rb"<Contents>(.*?)</Contents>", re.S)
_KEY = re.compile(rb"<Key>([^<]*)</Key>")
_ETAG = re.compile(rb"<ETag>([^<]*)</ETag>")
_SIZE = re.compile(rb"<Size>(\d+)</Size>")
_TRUNCATED = re.compile(rb"<IsTruncated>true</IsTruncated>")
_TOKEN = re.compile(rb"<NextContinuationToken>([^<]*)</NextContinuationToken>")


def parse_list_page(body: bytes) -> ListPage:
    """A ListObjectsV2 answer asked with ``encoding-type=url`` (keys URL-encoded)."""
    objects = []
    for found in _CONTENTS.finditer(body):
        item = found.group(1)
        key = _KEY.search(item)
        etag = _ETAG.search(item)
        size = _SIZE.search(item)
        if key is None:
            continue
        objects.append(
            ListedObject(
                unquote_plus(key.group(1).decode()),
                unescape(etag.group(1).decode()).strip('"') if etag else "",
                int(size.group(1)) if size else 0,
            )
        )
    token = _TOKEN.search(body)
    return ListPage(
        objects,
        bool(_TRUNCATED.search(body)),
        unescape(token.group(1).decode()) if token else None,
    )


class Signer:
    """AWS Signature V4 for S3 over one region; credentials from botocore's chain."""

    def __init__(self, region: str, credentials: Any) -> None:
        self.region = region
        self._credentials = credentials  # botocore Credentials (maybe refreshable)
        self._keys: dict[tuple[str, str], bytes] = {}

    def _signing_key(self, secret: str, day: str) -> bytes:
        key = self._keys.get((secret, day))
        if key is None:
            key = ("AWS4" + secret).encode()
            for part in (day, self.region, "s3", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {(secret, day): key}  # one day's key is all that is needed
        return key

    def sign(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        payload_sha256: str,
    ) -> None:
        """Add the date, payload hash, token and Authorization headers to ``headers``.

        ``path`` and ``query`` are as sent (already encoded; query pairs sorted)."""
        frozen = self._credentials.get_frozen_credentials()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        headers["x-amz-date"] = stamp
        headers["x-amz-content-sha256"] = payload_sha256
        if frozen.token:
            headers["x-amz-security-token"] = frozen.token
        names = sorted(headers, key=str.lower)
        canonical_headers = "".join(f"{n.lower()}:{headers[n].strip()}\n" for n in names)
        signed = ";".join(n.lower() for n in names)
        request = "\n".join(
            (method, path, query, canonical_headers, signed, payload_sha256)
        ).encode()
        scope = f"{stamp[:8]}/{self.region}/s3/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(request).hexdigest()}"
        signature = hmac.new(
            self._signing_key(frozen.secret_key, stamp[:8]), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={frozen.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )


def encode_query(query: dict[str, str] | None) -> str:
    if not query:
        return ""
    return "&".join(
        f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~')}"
        for name, value in sorted(query.items())
    )


class S3Http:
    """Signed requests to one S3 endpoint; safe to share between threads."""

    def __init__(self, endpoint: str, region: str, path_style: bool, credentials: Any) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {endpoint}")
        self.https = parts.scheme == "https"
        self.hostname = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        default_port = parts.port is None or parts.port == (443 if self.https else 80)
        self.netloc = self.hostname if default_port else f"{self.hostname}:{self.port}"
        if ":" in self.hostname and not self.hostname.startswith("["):
            self.netloc = f"[{self.hostname}]" + ("" if default_port else f":{self.port}")
        self.base_path = parts.path.rstrip("/")
        self.path_style = path_style
        self.signer = Signer(region, credentials)
        self._local = threading.local()
        self.requests = 0  # sent (retries included): for tests and the bench

    # ---- where a request goes ------------------------------------------------------------

    def _target(self, bucket: str, key: str) -> tuple[str, str]:
        """(Host header, path) for ``bucket``/``key``."""
        encoded = quote(key, safe="/~") if key else ""
        if self.path_style or not bucket:
            path = f"{self.base_path}/{bucket}" if bucket else self.base_path or "/"
            if key:
                path = f"{path}/{encoded}"
            return self.netloc, path or "/"
        return f"{bucket}.{self.netloc}", f"{self.base_path}/{encoded}"

    def connect(self, host: str, timeout: float = TIMEOUT_S) -> http.client.HTTPConnection:
        """A new connection to the endpoint (``host`` is the virtual host, for TLS's SNI)."""
        if self.https:
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                self.hostname if self.path_style else name, self.port, timeout=timeout
            )
        else:
            connection = http.client.HTTPConnection(self.hostname, self.port, timeout=timeout)
        return connection

    def _connection(self, host: str) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection to ``host``, and whether it was used before."""
        pool: dict[str, http.client.HTTPConnection] | None = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        connection = pool.get(host)
        if connection is not None:
            return connection, True
        connection = self.connect(host)
        pool[host] = connection
        return connection, False

    def _drop(self, host: str) -> None:
        pool = getattr(self._local, "pool", {})
        connection = pool.pop(host, None)
        if connection is not None:
            connection.close()

    def prepare(
        self,
        method: str,
        bucket: str,
        key: str = "",
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> tuple[str, str, dict[str, str]]:
        """(host, path with query, signed headers) of one request."""
        host, path = self._target(bucket, key)
        query_text = encode_query(query)
        sent = {"Host": host, **(headers or {})}
        if body or method in ("PUT", "POST"):
            sent["Content-Length"] = str(len(body))
        digest = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        self.signer.sign(method, path, query_text, sent, digest)
        return host, f"{path}?{query_text}" if query_text else path, sent

    # ---- one request ---------------------------------------------------------------------

    def request(
        self,
        method: str,
        bucket: str,
        key: str = "",
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> Response:
        last: Exception | None = None
        attempt = 0
        while attempt < ATTEMPTS:
            host, target, sent = self.prepare(method, bucket, key, query, headers, body)
            connection, reused = self._connection(host)
            try:
                self.requests += 1
                connection.request(method, target, body=body or None, headers=sent)
                answer = connection.getresponse()
                data = answer.read()
            except (OSError, http.client.HTTPException) as error:
                self._drop(host)
                last = error
                if reused and isinstance(
                    error, ConnectionError | http.client.RemoteDisconnected | BrokenPipeError
                ):
                    continue  # a kept-alive connection the server had closed: not an attempt
                attempt += 1
                if attempt < ATTEMPTS:
                    time.sleep(BACKOFF_S[min(attempt - 1, len(BACKOFF_S) - 1)])
                continue
            if answer.will_close:
                self._drop(host)
            response = Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, data)
            attempt += 1
            if answer.status in _RETRY_STATUS and attempt < ATTEMPTS:
                time.sleep(BACKOFF_S[min(attempt - 1, len(BACKOFF_S) - 1)])
                continue
            return response
        where = f"{'https' if self.https else 'http'}://{self.netloc}"
        raise S3HttpError(f"could not reach {where}: {last}")

    def close(self) -> None:
        """Close this thread's connections (the others close with their threads)."""
        for host in list(getattr(self._local, "pool", {})):
            self._drop(host)
