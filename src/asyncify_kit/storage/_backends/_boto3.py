"""``s3+boto3://bucket/prefix``: S3 through the legacy boto3 client, run in worker threads.

The same behaviour as the ``s3`` backend (it shares its code), with every client call made
through the core engine (`wrap`), so it works on asyncio and on trio and needs no aiohttp.
Response bodies are read one chunk per thread hop. A client or a response body that arrives
from its thread after the caller was cancelled is closed for it (`run_owned`), and closing
one runs to its end, whatever cancels the caller (`finish`).
"""

from __future__ import annotations

from typing import Any

from ..._executor import DEFAULT_POOL, quiet_late_errors
from ..._offload import run_owned, run_sync, wrap
from ._s3 import S3Backend
from .base import finish

__all__ = ["Boto3Backend"]


def _close_client(client: Any) -> None:
    client.close()


def _close_body(response: Any) -> None:
    if not isinstance(response, Exception):
        response["Body"].close()


class Boto3Backend(S3Backend):
    """Objects in an S3 bucket under an optional prefix, through boto3 in threads."""

    name = "s3+boto3"
    cancels_calls = False  # (a call runs in a thread: the close lets it end, if slowly)

    def _make_client(self) -> Any:
        import boto3.session

        from ...aws import botocore_session

        self.check_client_options()
        core = botocore_session("s3", aio=False, profile=self.options.get("profile") or None)
        session = boto3.session.Session(botocore_session=core)
        return session.client("s3", **self.client_kwargs())

    async def aopen(self) -> None:
        try:  # (botocore imported by `_make_client`, in its thread, not on the loop)
            client = await run_owned(DEFAULT_POOL, _close_client, self._make_client)
        except Exception as exc:
            error = self.client_error(exc)
            if error is None:
                raise
            raise error from exc
        self._client_cm = client
        self._client = wrap(client)

    async def aclose(self) -> None:
        await self.before_close()
        client, self._client_cm, self._client = self._client_cm, None, None
        if client is not None:
            # to the end: leaving `async with` in a cancelled task must still close its connections
            await finish(run_sync(client.close))

    async def send(self, operation: str, kwargs: dict[str, Any]) -> Any:
        method = getattr(self._client.wrapped, operation)
        kwargs = {"Bucket": self.bucket, **kwargs}
        # (a cancelled caller's error, a missing key say, is dropped, not logged)
        with quiet_late_errors():
            if operation == "get_object":
                # the response's body is an open connection: if the caller is cancelled while
                # boto3 fetches it, it is closed for the caller instead of being dropped open
                return await run_owned(DEFAULT_POOL, _close_body, method, **kwargs)
            return await run_sync(method, **kwargs)

    async def body_read(self, body: Any, size: int | None) -> bytes:
        data: bytes = await run_sync(body.read, size)
        return data

    async def body_close(self, body: Any) -> None:
        # to the end: a read cancelled in the middle of a body still closes its connection
        await finish(run_sync(body.close))

    def body_errors(self) -> tuple[type[Exception], ...]:
        from botocore.exceptions import BotoCoreError
        from urllib3.exceptions import HTTPError

        # botocore wraps urllib3's read errors (ResponseStreamingError, ReadTimeoutError)
        return (BotoCoreError, HTTPError, OSError)
