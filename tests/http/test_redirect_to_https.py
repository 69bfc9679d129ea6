"""A redirect from ``http://host`` to ``https://host`` (default ports) is one to another
origin, on every backend: it drops ``Authorization``, ``Proxy-Authorization`` and the
request's own cookies, as any cross-origin redirect does.

httpx and requests made an exception for this upgrade and kept ``Authorization`` (aiohttp
dropped it). Their rule only applies on the default ports, so the servers here listen on
ports 80 and 443 of a loopback address of their own (``tls_servers.py``, in its own process).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncify_kit.http import HttpClient
from tests.conftest import ON_CI

pytestmark = [
    pytest.mark.anyio,
    # verify=False, as asked: requests (urllib3) warns of it on each request
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

# any 127.0.0.0/8 address is loopback on Linux: one per xdist worker, since several workers
# may run this module's tests, each starting its servers (ports 80 and 443 of its address)
HOST = f"127.80.44.{3 + int(os.environ.get('PYTEST_XDIST_WORKER', 'gw0').removeprefix('gw'))}"
SCRIPT = Path(__file__).with_name("tls_servers.py")
CREDENTIALS = {"Authorization": "Bearer s3cr3t", "Proxy-Authorization": "Basic cHJveHk="}


@pytest.fixture(scope="module")
def tls_servers() -> Iterator[str]:
    """``http://HOST`` (port 80) and ``https://HOST`` (port 443), both real servers."""
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), HOST],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert process.stdout is not None and process.stdin is not None
    line = process.stdout.readline()
    if line.strip() != b"ready":
        process.kill()
        _, err = process.communicate()
        why = f"the servers on {HOST}:80 and :443 did not start: {err.decode()[-400:]}"
        if ON_CI:
            pytest.fail(why, pytrace=False)
        pytest.skip(why)  # not root here: ports 80 and 443 cannot be bound
    try:
        yield HOST
    finally:
        process.stdin.close()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()
        if process.stderr is not None:
            process.stderr.close()


# how the credentials are given: the client's keyword arguments, the request's
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "auth": ({"auth": ("ann", "s3cret")}, {}),
    "client-headers": ({"headers": {"Authorization": "Bearer s3cr3t"}}, {}),
    "request-headers": ({}, {"headers": {"Authorization": "Bearer s3cr3t"}}),
    "headers-and-cookies": ({}, {"headers": CREDENTIALS, "cookies": {"own": "cookie"}}),
}
BASIC = "Basic YW5uOnMzY3JldA=="  # ann:s3cret


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


async def seen_by_server(backend: str, url: str, case: str) -> tuple[str, dict[str, str]]:
    """The final URL, and the headers the final server received, by request() and stream()
    (a request with only ``Authorization`` takes another path on httpx than one with cookies
    or ``Proxy-Authorization``: each case covers both)."""
    client_kwargs, request_kwargs = CASES[case]
    async with HttpClient(backend=backend, verify=False, retries=0, **client_kwargs) as http:
        r = await http.get(url, **request_kwargs)
        async with http.stream("GET", url, **request_kwargs) as streamed:
            await streamed.aread()
        assert streamed.url == r.url
        assert streamed.json() == r.json()
    body = r.json()
    return r.url, body["headers"]


async def test_http_to_https_drops_the_credentials(
    tls_servers: str, backend: str, case: str
) -> None:
    url, headers = await seen_by_server(backend, f"http://{tls_servers}/to-https", case)
    assert url == f"https://{tls_servers}/echo"
    assert "authorization" not in headers
    assert "proxy-authorization" not in headers
    assert "own=cookie" not in headers.get("cookie", "")


async def test_a_same_origin_redirect_keeps_them(tls_servers: str, backend: str, case: str) -> None:
    """The control: on each of the two origins, a redirect to the same one keeps them."""
    for scheme in ("http", "https"):
        url, headers = await seen_by_server(backend, f"{scheme}://{tls_servers}/to-echo", case)
        assert url == f"{scheme}://{tls_servers}/echo"
        assert headers["authorization"] == (BASIC if case == "auth" else "Bearer s3cr3t")
        if case == "headers-and-cookies":
            assert headers["proxy-authorization"] == CREDENTIALS["Proxy-Authorization"]
            assert "own=cookie" in headers["cookie"]
