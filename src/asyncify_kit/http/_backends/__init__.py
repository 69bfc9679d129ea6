"""The HTTP facade's backends: one abstract base (`base.HttpBackend`) and one module per
library (`_httpx`, `_aiohttp`, `_requests`), imported only when chosen."""
