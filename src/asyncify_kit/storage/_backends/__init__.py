"""Storage backends: one module per driver, all implementing `StorageBackend`."""

from .base import ByteReader as ByteReader
from .base import ByteWriter as ByteWriter
from .base import ObjectInfo as ObjectInfo
from .base import StorageBackend as StorageBackend

__all__ = ["ByteReader", "ByteWriter", "ObjectInfo", "StorageBackend"]
