"""One async HTTP client over httpx, aiohttp or a threaded requests session.

>>> from asyncify_kit.http import HttpClient
>>> async with HttpClient("http://127.0.0.1:8000", backend="aiohttp", retries=3) as http:
...     r = await http.get("/items")

The backend is an argument or ``ASYNCIFY_HTTP_BACKEND`` (default httpx); requests, responses,
timeouts, retries and errors are the same whichever runs.
"""

from ..exceptions import ConnectError as ConnectError
from ..exceptions import HTTPError as HTTPError
from ..exceptions import HTTPStatusError as HTTPStatusError
from ..exceptions import ReadError as ReadError
from ..exceptions import TimeoutException as TimeoutException
from ..exceptions import TransportError as TransportError
from ._backends.base import BackendStream as BackendStream
from ._backends.base import ClientConfig as ClientConfig
from ._backends.base import HttpBackend as HttpBackend
from ._client import HttpClient as HttpClient
from ._client import RequestOptions as RequestOptions
from ._content import FileField as FileField
from ._content import FilesInput as FilesInput
from ._models import Headers as Headers
from ._models import Limits as Limits
from ._models import Request as Request
from ._models import Response as Response
from ._models import Timeout as Timeout
from ._retry import Retry as Retry
from ._retry import parse_retry_after as parse_retry_after

__all__ = [
    "BackendStream",
    "ClientConfig",
    "ConnectError",
    "FileField",
    "FilesInput",
    "HTTPError",
    "HTTPStatusError",
    "Headers",
    "HttpBackend",
    "HttpClient",
    "Limits",
    "ReadError",
    "Request",
    "RequestOptions",
    "Response",
    "Retry",
    "Timeout",
    "TimeoutException",
    "TransportError",
    "parse_retry_after",
]
