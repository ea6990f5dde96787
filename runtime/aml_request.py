"""``rawhttp`` and ``AMLRequest``: raw request access for ``run()``, without Flask.

A stand-in for ``azureml.contrib.services.aml_request`` (Azure ML's
``AMLRequest`` subclasses ``flask.Request``). As in Azure ML, decorating
any function with ``@rawhttp`` switches the server to calling
``run(request)`` with the HTTP request instead of the body text.

``AMLRequest`` offers the parts of Flask's request that scoring scripts
use: ``method``, ``path``, ``full_path``, ``url``, ``args``, ``headers``,
``data`` / ``get_data()``, ``get_json()`` / ``json`` / ``is_json``,
``form``, ``files``, ``values``, ``content_type``, ``mimetype``,
``content_length``, ``remote_addr``, ``stream``. ``get_json()`` raises
:class:`BadRequest` (400) or :class:`UnsupportedMediaType` (415) as Flask
does; the server answers those with their status.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl

from modelform.runtime.aml_response import Headers
from modelform.runtime.multipart import FileStorage, parse_multipart

# Azure ML's flag, same name: set once any function is decorated with @rawhttp.
_rawHttpRequested = False  # noqa: N816

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def rawhttp(func: Any) -> Any:
    """Ask the server to call ``run(request)`` with the raw HTTP request."""
    global _rawHttpRequested
    _rawHttpRequested = True
    return func


class ClientError(Exception):
    """A 4xx error raised while reading the request; the server answers with ``code``."""

    code = 400
    description = "Bad request"

    def __init__(self, description: str | None = None) -> None:
        if description is not None:
            self.description = description
        super().__init__(self.description)


class BadRequest(ClientError):
    code = 400


class UnsupportedMediaType(ClientError):
    code = 415


class MultiDict:
    """Ordered multi-map with Werkzeug's reading API (``get``, ``getlist``, ``[]``)."""

    def __init__(self, pairs: Iterable[tuple[str, Any]] = ()) -> None:
        self._pairs = list(pairs)

    def get(self, key: str, default: Any = None, type: Any = None) -> Any:  # noqa: A002
        for name, value in self._pairs:
            if name == key:
                if type is None:
                    return value
                try:
                    return type(value)
                except (TypeError, ValueError):
                    return default
        return default

    def __getitem__(self, key: str) -> Any:
        for name, value in self._pairs:
            if name == key:
                return value
        raise BadRequest(f"missing key {key!r}")

    def getlist(self, key: str) -> list[Any]:
        return [value for name, value in self._pairs if name == key]

    def __contains__(self, key: object) -> bool:
        return any(name == key for name, _ in self._pairs)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def keys(self) -> list[str]:
        return list(dict.fromkeys(name for name, _ in self._pairs))

    def items(self, multi: bool = False) -> list[tuple[str, Any]]:
        if multi:
            return list(self._pairs)
        return [(key, self.get(key)) for key in self.keys()]

    def values(self) -> list[Any]:
        return [self.get(key) for key in self.keys()]

    def lists(self) -> list[tuple[str, list[Any]]]:
        return [(key, self.getlist(key)) for key in self.keys()]

    def to_dict(self, flat: bool = True) -> dict[str, Any]:
        return dict(self.items()) if flat else dict(self.lists())

    def __repr__(self) -> str:
        return f"MultiDict({self._pairs!r})"


class AMLRequest:
    """The HTTP request given to a ``@rawhttp`` ``run()``. Built by the server."""

    def __init__(
        self,
        method: str,
        path: str,
        query_string: bytes,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        scheme: str = "http",
        host: str = "",
        remote_addr: str | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = Headers(headers)
        self.scheme = scheme
        self.remote_addr = remote_addr
        self._body = body
        self._host = host
        self._args: MultiDict | None = None
        self._form: tuple[MultiDict, MultiDict] | None = None
        self._json: Any = _UNSET

    @classmethod
    def from_asgi(cls, scope: dict[str, Any], body: bytes) -> AMLRequest:
        headers = [
            (name.decode("latin-1").title(), v.decode("latin-1")) for name, v in scope["headers"]
        ]
        host = next((value for name, value in headers if name == "Host"), "")
        if not host and scope.get("server"):
            server_host, server_port = scope["server"]
            host = f"{server_host}:{server_port}"
        client = scope.get("client")
        return cls(
            method=scope["method"],
            path=scope["path"],
            query_string=scope.get("query_string", b""),
            headers=headers,
            body=body,
            scheme=scope.get("scheme", "http"),
            host=host,
            remote_addr=client[0] if client else None,
        )

    # -- where ---------------------------------------------------------------
    @property
    def host(self) -> str:
        return self._host

    @property
    def full_path(self) -> str:
        return f"{self.path}?{self.query_string.decode('latin-1')}"

    @property
    def host_url(self) -> str:
        return f"{self.scheme}://{self._host}/"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self._host}{self.path}"

    @property
    def url(self) -> str:
        query = self.query_string.decode("latin-1")
        return self.base_url + (f"?{query}" if query else "")

    url_root = host_url

    @property
    def args(self) -> MultiDict:
        if self._args is None:
            query = self.query_string.decode("latin-1")
            self._args = MultiDict(parse_qsl(query, keep_blank_values=True))
        return self._args

    # -- what ----------------------------------------------------------------
    @property
    def content_type(self) -> str | None:
        return self.headers.get("Content-Type")

    @property
    def mimetype(self) -> str:
        return (self.content_type or "").split(";", 1)[0].strip().lower()

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        return int(value) if value and value.isdigit() else None

    @property
    def is_json(self) -> bool:
        mimetype = self.mimetype
        return mimetype == "application/json" or (
            mimetype.startswith("application/") and mimetype.endswith("+json")
        )

    def get_data(
        self, cache: bool = True, as_text: bool = False, parse_form_data: bool = False
    ) -> bytes | str:
        if parse_form_data and self.mimetype in _FORM_TYPES:
            self._parse_form()
            return "" if as_text else b""
        return self._body.decode("utf-8", "replace") if as_text else self._body

    @property
    def data(self) -> bytes:
        data = self.get_data(parse_form_data=True)
        assert isinstance(data, bytes)
        return data

    @property
    def stream(self) -> io.BytesIO:
        return io.BytesIO(self._body)

    input_stream = stream

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        if self._json is not _UNSET and cache:
            return self._json
        if not (force or self.is_json):
            if silent:
                return None
            raise UnsupportedMediaType(
                "Did not attempt to load JSON data because the request "
                "Content-Type was not 'application/json'."
            )
        try:
            value = json.loads(self._body)
        except ValueError as error:
            if silent:
                return None
            raise BadRequest(f"Failed to decode JSON object: {error}") from None
        if cache:
            self._json = value
        return value

    @property
    def json(self) -> Any:
        return self.get_json()

    @property
    def form(self) -> MultiDict:
        return self._parse_form()[0]

    @property
    def files(self) -> MultiDict:
        return self._parse_form()[1]

    @property
    def values(self) -> MultiDict:
        return MultiDict(self.args.items(multi=True) + self.form.items(multi=True))

    @property
    def cookies(self) -> dict[str, str]:
        jar: dict[str, str] = {}
        for header in self.headers.getlist("Cookie"):
            for part in header.split(";"):
                name, _, value = part.strip().partition("=")
                if name:
                    jar.setdefault(name, value)
        return jar

    @property
    def environ(self) -> dict[str, Any]:
        """A small WSGI-like view, for scripts that peek at it."""
        env: dict[str, Any] = {
            "REQUEST_METHOD": self.method,
            "PATH_INFO": self.path,
            "QUERY_STRING": self.query_string.decode("latin-1"),
            "CONTENT_TYPE": self.content_type or "",
            "CONTENT_LENGTH": str(len(self._body)),
            "REMOTE_ADDR": self.remote_addr or "",
            "wsgi.url_scheme": self.scheme,
        }
        for name, value in self.headers:
            env.setdefault("HTTP_" + name.upper().replace("-", "_"), value)
        return env

    def _parse_form(self) -> tuple[MultiDict, MultiDict]:
        if self._form is None:
            mimetype = self.mimetype
            if mimetype == "application/x-www-form-urlencoded":
                text = self._body.decode("utf-8", "replace")
                self._form = (MultiDict(parse_qsl(text, keep_blank_values=True)), MultiDict())
            elif mimetype == "multipart/form-data":
                fields, files = parse_multipart(self.content_type or "", self._body)
                self._form = (MultiDict(fields), MultiDict(files))
            else:
                self._form = (MultiDict(), MultiDict())
        return self._form

    def __repr__(self) -> str:
        return f"<AMLRequest {self.url!r} [{self.method}]>"


_UNSET: Any = object()

__all__ = [
    "AMLRequest",
    "BadRequest",
    "ClientError",
    "FileStorage",
    "MultiDict",
    "UnsupportedMediaType",
    "rawhttp",
]
