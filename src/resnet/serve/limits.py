"""Every bound on what a client may send, and the checks that enforce them.

A request is refused as early and as cheaply as possible: an oversized ``Content-Length`` before a
byte of the body is read, a body that grows past the limit while it streams, a body that trickles in
slower than the read deadline, an image whose header declares more pixels than a photo has, a format
or mode the model cannot take. Each refusal is a ``RequestError`` with the HTTP status and a message
naming the problem; nothing a client sends can raise anything else.
"""

from __future__ import annotations

import hmac
import io
import ipaddress
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from resnet.errors import ResNetError

MB = 1024 * 1024
# A 48-megapixel phone photo (8000 x 6000) passes; a crafted image claiming gigapixels does not.
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
# Formats Pillow decodes that carry photographs; anything else is refused from the header.
ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO"})
# Modes decode_image converts to gray or RGB exactly (others, e.g. LAB or HSV, it cannot).
ACCEPTED_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr",
                            "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


@dataclass(frozen=True)
class Limits:
    """What one request may cost the server.

    ``max_body_bytes``: larger bodies get 413 (from ``Content-Length`` before reading, else while
    streaming). ``max_queue``: images waiting for a batch; more get 503 with ``Retry-After``.
    ``max_image_pixels``: Pillow's decompression-bomb bound (width x height from the header).
    ``read_timeout_s``: the whole body must arrive within this, else 408 (a slow client cannot hold
    a connection). ``max_images``: images in one batch request. ``shutdown_timeout_s``: how long
    SIGTERM waits for requests in flight.
    """

    max_body_bytes: int = 10 * MB
    max_queue: int = 256
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    read_timeout_s: float = 10.0
    max_images: int = 64
    shutdown_timeout_s: float = 30.0

    def check(self) -> None:
        for name in ("max_body_bytes", "max_queue", "max_image_pixels", "max_images"):
            if getattr(self, name) < 1:
                raise ResNetError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("read_timeout_s", "shutdown_timeout_s"):
            if not getattr(self, name) > 0:
                raise ResNetError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")


class RequestError(Exception):
    """A request the server refuses: HTTP ``status``, a short ``kind`` (the metrics label), a message."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = headers or {}


def body_too_large(limit: int) -> RequestError:
    return RequestError(413, "body_too_large", f"request body exceeds --max-body-mb ({limit / MB:g} MB)",
                        {"Connection": "close"})


def check_content_length(value: str | None, limit: int) -> None:
    """413 from the header alone, before any of the body is read."""
    if value is None:
        return
    try:
        length = int(value)
    except ValueError:
        raise RequestError(400, "bad_request", f"Content-Length {value!r} is not a number") from None
    if length > limit:
        raise body_too_large(limit)


def check_image_header(data: bytes, max_pixels: int) -> None:
    """Refuse from the header: not an image (415), a format or mode we do not take (415), a bomb (400)."""
    if not data:
        raise RequestError(400, "empty_body", "the request holds no image (empty body)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt, mode, (width, height) = img.format, img.mode, img.size
    except UnidentifiedImageError:
        raise RequestError(415, "not_an_image", "the body is not an image Pillow can identify "
                           f"(send one of {', '.join(sorted(ACCEPTED_FORMATS))})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise RequestError(400, "decompression_bomb", f"image declares more than {max_pixels} pixels "
                           "(a decompression bomb?); see --max-image-pixels") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise RequestError(400, "bad_image", f"unreadable image header: {type(exc).__name__}: {exc}") from None
    if width * height > max_pixels:
        raise RequestError(400, "decompression_bomb", f"image of {width}x{height} pixels exceeds --max-image-pixels "
                           f"({max_pixels})")
    if fmt not in ACCEPTED_FORMATS:
        raise RequestError(415, "unsupported_format", f"image format {fmt} is not accepted "
                           f"(send one of {', '.join(sorted(ACCEPTED_FORMATS))})")
    if mode not in ACCEPTED_MODES:
        raise RequestError(415, "unsupported_mode", f"image mode {mode} cannot be converted to the model's "
                           "gray or RGB input")


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, "localhost")."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything, so treat it as public


def read_api_key(path: str | Path) -> bytes:
    """The key in ``path`` (surrounding whitespace removed); a missing or empty file is an error."""
    path = Path(path)
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise ResNetError(f"--api-key-file {path}: {exc.strerror or exc}") from None
    if len(key) < 16:
        raise ResNetError(f"--api-key-file {path} holds a key of {len(key)} bytes; use at least 16 random bytes "
                          "(e.g. `openssl rand -hex 32 > key`)")
    return key


def request_key(headers: dict[bytes, bytes] | list[tuple[bytes, bytes]]) -> bytes | None:
    """The key a request carries: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    for name, value in headers.items() if isinstance(headers, dict) else headers:
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            return value[7:].strip()
        if name == b"x-api-key":
            return value.strip()
    return None


def key_matches(given: bytes | None, expected: bytes) -> bool:
    # compare_digest takes the same time wherever the first difference is: no timing oracle.
    return given is not None and hmac.compare_digest(given, expected)
