"""Parse untrusted JSON documents from images and check the types of their fields.

Every manifest, index and config comes from the image, so a field of the wrong type must
raise ImageFormatError naming the document and the field, never KeyError or TypeError.
"""

from __future__ import annotations

import json
from typing import Any

from edgetrim.errors import ImageFormatError
from edgetrim.image.digest import Digest
from edgetrim.image.model import Descriptor, Platform

# The largest manifest, index, config or repositories file read into memory. Real ones are a
# few KiB; a config with a long history reaches a few hundred KiB.
MAX_JSON_BYTES = 8 * 1024 * 1024

_MISSING = object()


def parse_json(raw: bytes, *, where: str) -> Any:
    """Parse ``raw`` as JSON or raise ImageFormatError naming ``where``."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ImageFormatError(
            f"{where}: not valid JSON ({exc}); the image is corrupt, export it again"
        ) from None


def expect_object(value: Any, *, where: str) -> dict[str, Any]:
    """Return ``value`` if it is a JSON object, else raise ImageFormatError."""
    if not isinstance(value, dict):
        raise ImageFormatError(f"{where}: expected a JSON object, found {_kind(value)}")
    return value


def get_field(obj: dict[str, Any], key: str, kind: type, *, where: str, default: Any = _MISSING):
    """Return ``obj[key]`` checked to be of ``kind``.

    A missing key or a JSON null returns ``default``, or raises ImageFormatError when no
    default is given. A bool never passes as an int.
    """
    value = obj.get(key)
    if value is None:
        if default is _MISSING:
            raise ImageFormatError(f"{where}: required field {key!r} is missing")
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ImageFormatError(
            f"{where}: field {key!r} must be {_kind_name(kind)}, found {_kind(value)}"
        )
    return value


def get_str_list(obj: dict[str, Any], key: str, *, where: str) -> list[str]:
    """Return the list of strings at ``obj[key]``; missing or null gives an empty list."""
    values = get_field(obj, key, list, where=where, default=[])
    for value in values:
        if not isinstance(value, str):
            raise ImageFormatError(f"{where}: {key!r} must hold strings, found {_kind(value)}")
    return values


def parse_descriptor(value: Any, *, where: str) -> Descriptor:
    """Parse an OCI descriptor object; the media type may be absent (it is then "")."""
    obj = expect_object(value, where=where)
    digest = Digest.parse(get_field(obj, "digest", str, where=where), context=where)
    size = get_field(obj, "size", int, where=where)
    if size < 0:
        raise ImageFormatError(f"{where}: size {size} is negative")
    annotations = get_field(obj, "annotations", dict, where=where, default={})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()):
        raise ImageFormatError(f"{where}: annotations must map strings to strings")
    return Descriptor(
        media_type=get_field(obj, "mediaType", str, where=where, default=""),
        digest=digest,
        size=size,
        annotations=dict(annotations),
        urls=tuple(get_str_list(obj, "urls", where=where)),
        platform=_parse_platform(obj.get("platform"), where=where),
    )


def _parse_platform(value: Any, *, where: str) -> Platform | None:
    if value is None:
        return None
    obj = expect_object(value, where=f"{where} platform")
    return Platform(
        get_field(obj, "os", str, where=f"{where} platform", default=""),
        get_field(obj, "architecture", str, where=f"{where} platform", default=""),
        get_field(obj, "variant", str, where=f"{where} platform", default=""),
    )


def dump_json(value: Any) -> bytes:
    """Serialize ``value`` compactly with sorted keys, so equal values give equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _kind(value: Any) -> str:
    return "null" if value is None else _kind_name(type(value))


def _kind_name(kind: type) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer"}
    return names.get(kind, kind.__name__)
