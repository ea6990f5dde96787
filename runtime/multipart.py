"""``multipart/form-data`` bodies for ``AMLRequest.form`` / ``.files``.

Uses the standard library's MIME parser (HTTP policy, so binary parts
and long lines survive). Only for raw-request scripts that upload files;
nothing on the fast path calls it.
"""

from __future__ import annotations

import io
import shutil
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, BinaryIO


class FileStorage:
    """An uploaded file, shaped like Werkzeug's ``FileStorage``."""

    def __init__(self, data: bytes, filename: str | None, name: str, content_type: str | None):
        self.stream: BinaryIO = io.BytesIO(data)
        self.filename = filename
        self.name = name
        self.content_type = content_type
        self.content_length = len(data)

    @property
    def mimetype(self) -> str:
        return (self.content_type or "").split(";", 1)[0].strip().lower()

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(size)

    def save(self, destination: Any, buffer_size: int = 16384) -> None:
        if isinstance(destination, str | bytes) or hasattr(destination, "__fspath__"):
            with open(destination, "wb") as target:
                shutil.copyfileobj(self.stream, target, buffer_size)
        else:
            shutil.copyfileobj(self.stream, destination, buffer_size)

    def __bool__(self) -> bool:
        return bool(self.filename)

    def __repr__(self) -> str:
        return f"<FileStorage {self.filename!r} ({self.content_type!r})>"


def parse_multipart(
    content_type: str, body: bytes
) -> tuple[list[tuple[str, str]], list[tuple[str, FileStorage]]]:
    """Split a multipart body into form fields and files (both in order)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    fields: list[tuple[str, str]] = []
    files: list[tuple[str, FileStorage]] = []
    if not message.is_multipart():
        return fields, files
    assert isinstance(message, EmailMessage)
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            files.append((name, FileStorage(data, filename, name, part.get("Content-Type"))))
        else:
            charset = part.get_content_charset() or "utf-8"
            fields.append((name, data.decode(charset, "replace")))
    return fields, files
