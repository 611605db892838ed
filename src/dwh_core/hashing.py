"""The hash-key and hashdiff functions every layer and every other service uses.

The rule, fixed and promised in docs/CONTRACT.md §3 (details in docs/DATA_MODEL.md);
never change it silently:

* **hash key** of a business key: each part is turned into text (``str``), trimmed of
  surrounding white space and upper-cased (Unicode upper case, so ``"пицца"`` and
  ``"ПИЦЦА"`` are the same key); the parts of a composite key are joined with ``||``;
  the UTF-8 bytes of that text are hashed with MD5 and the 16 digest bytes are read as
  a uuid.
* **hashdiff** of a satellite's attributes: the same, except that the text is **not**
  upper-cased (a change of case in a name is a change), and ``None`` becomes the empty
  string.
"""

from __future__ import annotations

import hashlib
import uuid

SEPARATOR = "||"


def _md5_uuid(text: str) -> uuid.UUID:
    return uuid.UUID(bytes=hashlib.md5(text.encode("utf-8"), usedforsecurity=False).digest())


def hash_key(*parts: object) -> uuid.UUID:
    """Hub or link key: MD5 of the trimmed, upper-cased parts joined with ``||``."""
    return _md5_uuid(SEPARATOR.join(str(part).strip().upper() for part in parts))


def hashdiff(*attributes: object) -> uuid.UUID:
    """Satellite change detector: MD5 of the trimmed attributes joined with ``||``."""
    return _md5_uuid(
        SEPARATOR.join("" if value is None else str(value).strip() for value in attributes)
    )
