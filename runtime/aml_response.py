"""``AMLResponse``: what a raw-request ``run()`` returns, without Flask.

A stand-in for ``azureml.contrib.services.aml_response`` (Azure ML's
version subclasses ``flask.Response``). Same constructor and the parts
of the Flask response that scoring scripts use: ``status_code``,
``headers`` (case-insensitive, repeatable), ``data`` / ``get_data()``,
``mimetype`` / ``content_type``. Registered under Azure ML's module
names only when the real modules are absent (see ``compat``).

Constructor semantics follow Azure ML's: ``json_str=True`` JSON-encodes
``message``; ``message=None`` gives ``{}``; a comma in a header value
from ``response_headers`` makes several headers; the response always
carries ``x-ms-run-function-failed``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

_DEFAULT_MIMETYPE = "text/html"


class Headers:
    """An ordered, case-insensitive multi-map of header names to string values.

    Iterating yields ``(name, value)`` pairs, as Werkzeug's ``Headers`` does.
    """

    def __init__(self, items: Iterable[tuple[str, Any]] | Mapping[str, Any] | None = None):
        self._items: list[tuple[str, str]] = []
        if items is not None:
            self.extend(items)

    def extend(self, items: Iterable[tuple[str, Any]] | Mapping[str, Any]) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        for key, value in pairs:
            self.add(key, value)

    def add(self, key: str, value: Any) -> None:
        self._items.append((str(key), _text(value)))

    add_header = add

    def set(self, key: str, value: Any) -> None:
        lower = key.lower()
        for index, (name, _) in enumerate(self._items):
            if name.lower() == lower:
                self._items[index] = (str(key), _text(value))
                self._items[index + 1 :] = [
                    item for item in self._items[index + 1 :] if item[0].lower() != lower
                ]
                return
        self.add(key, value)

    __setitem__ = set

    def get(self, key: str, default: Any = None, type: Any = None) -> Any:  # noqa: A002
        lower = key.lower()
        for name, value in self._items:
            if name.lower() == lower:
                return type(value) if type is not None else value
        return default

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def getlist(self, key: str) -> list[str]:
        lower = key.lower()
        return [value for name, value in self._items if name.lower() == lower]

    get_all = getlist

    def remove(self, key: str) -> None:
        lower = key.lower()
        self._items = [item for item in self._items if item[0].lower() != lower]

    def __delitem__(self, key: str) -> None:
        self.remove(key)

    def setdefault(self, key: str, default: Any) -> str:
        if key not in self:
            self.add(key, default)
        return self[key]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def keys(self) -> list[str]:
        return [name for name, _ in self._items]

    def values(self) -> list[str]:
        return [value for _, value in self._items]

    def to_wsgi_list(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def _as_bytes(message: Any) -> bytes:
    if isinstance(message, bytes):
        return message
    if isinstance(message, str):
        return message.encode("utf-8")
    if isinstance(message, bytearray | memoryview):
        return bytes(message)
    if isinstance(message, Iterable):
        return b"".join(_as_bytes(part) for part in message)
    raise TypeError(f"a response body must be str, bytes or an iterable of them, not {message!r}")


class AMLResponse:
    """A response a raw-request ``run()`` returns as-is."""

    def __init__(
        self,
        message: Any,
        status_code: int,
        response_headers: Mapping[str, str] | None = None,
        json_str: bool = False,
        run_function_failed: bool = False,
    ) -> None:
        response_headers = response_headers or {}
        self.status_code = int(status_code)
        self.headers = Headers()
        if message is None:
            self._data = b"{}"
            self.headers.set("Content-Type", "application/json")
        elif json_str:
            self._data = json.dumps(message).encode("utf-8")
            self.headers.set("Content-Type", "application/json")
        else:
            self._data = _as_bytes(message)
            if not any(name.lower() == "content-type" for name in response_headers):
                self.headers.set("Content-Type", f"{_DEFAULT_MIMETYPE}; charset=utf-8")
        self.headers["x-ms-run-function-failed"] = run_function_failed
        for header, value in response_headers.items():
            for part in str(value).split(","):
                self.headers.add(header, part.strip())

    @property
    def status(self) -> str:
        return str(self.status_code)

    @property
    def data(self) -> bytes:
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        self.set_data(value)

    def get_data(self, as_text: bool = False) -> bytes | str:
        return self._data.decode("utf-8") if as_text else self._data

    def set_data(self, value: Any) -> None:
        self._data = _as_bytes(value)

    @property
    def content_type(self) -> str | None:
        return self.headers.get("Content-Type")

    @content_type.setter
    def content_type(self, value: str) -> None:
        self.headers["Content-Type"] = value

    @property
    def mimetype(self) -> str | None:
        value = self.content_type
        return value.split(";", 1)[0].strip().lower() if value else None

    @mimetype.setter
    def mimetype(self, value: str) -> None:
        self.headers["Content-Type"] = value

    @property
    def content_length(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"<AMLResponse {len(self._data)} bytes [{self.status_code}]>"
