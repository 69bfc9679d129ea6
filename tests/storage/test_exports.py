"""The public names of `asyncify_kit.storage` and `asyncify_kit.aws` are exactly these."""

from __future__ import annotations

import subprocess
import sys

from asyncify_kit import aws, storage


def test_storage_exports() -> None:
    assert storage.__all__ == sorted(storage.__all__)
    assert set(storage.__all__) == {
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
    }
    for name in storage.__all__:
        assert getattr(storage, name).__module__.startswith("asyncify_kit")


def test_aws_exports() -> None:
    assert aws.__all__ == sorted(aws.__all__)
    assert set(aws.__all__) == {
        "AsyncBody",
        "Boto3Client",
        "botocore_session",
        "bounded_config",
        "client",
    }


def test_errors_are_the_core_ones() -> None:
    from asyncify_kit import exceptions

    assert storage.NotFound is exceptions.NotFound
    assert issubclass(storage.NotFound, FileNotFoundError)
    assert issubclass(storage.AlreadyExists, FileExistsError)
    assert issubclass(storage.PermissionDenied, PermissionError)
    assert issubclass(storage.InvalidPath, ValueError)


def test_core_import_loads_no_storage_driver() -> None:
    code = (
        "import sys, asyncify_kit; "
        "print(sorted(m for m in ('asyncify_kit.storage', 'asyncify_kit.aws', 'boto3', "
        "'aioboto3', 'aiofiles') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    code = (
        "import sys, asyncify_kit.storage; print('boto3' in sys.modules, 'aiofiles' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"  # backends are imported when first opened
