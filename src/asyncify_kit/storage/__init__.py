"""Async object storage: local files, S3 and memory behind one interface, chosen by URL.

```python
async with Storage("file://./data") as st:      # or s3://bucket/prefix, memory://
    await st.write("a/b.txt", b"hello")
    assert await st.read("a/b.txt") == b"hello"
```

See `Storage` for the operations and the backends; the errors are the StorageError tree of
`asyncify_kit.exceptions` (re-exported here), identical on every backend.
"""

from ..exceptions import AlreadyExists as AlreadyExists
from ..exceptions import InvalidPath as InvalidPath
from ..exceptions import NotFound as NotFound
from ..exceptions import PermissionDenied as PermissionDenied
from ..exceptions import StorageError as StorageError
from ._async_file import AsyncFile as AsyncFile
from ._async_file import FileOpener as FileOpener
from ._backends.base import ByteReader as ByteReader
from ._backends.base import ByteWriter as ByteWriter
from ._backends.base import ObjectInfo as ObjectInfo
from ._backends.base import StorageBackend as StorageBackend
from ._keys import validate_key as validate_key
from ._keys import validate_prefix as validate_prefix
from ._storage import ObjectStream as ObjectStream
from ._storage import Storage as Storage

__all__ = [
    "AlreadyExists",
    "AsyncFile",
    "ByteReader",
    "ByteWriter",
    "FileOpener",
    "InvalidPath",
    "NotFound",
    "ObjectInfo",
    "ObjectStream",
    "PermissionDenied",
    "Storage",
    "StorageBackend",
    "StorageError",
    "validate_key",
    "validate_prefix",
]
