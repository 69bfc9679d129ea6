"""catalogue: a small product-catalogue service built on asyncify-kit and FastAPI.

Items live in a SQL database, their attachments in object storage, prices are converted
through an upstream exchange-rate API, and VAT comes from a legacy sync module run under
``@asyncify``. Which database and which storage is configuration only:

- ``ASYNCIFY_SQL_URL`` (default ``sqlite:///./asyncify.db``), e.g. ``postgresql://u:p@host/db``;
- ``ASYNCIFY_STORAGE_URL`` (default ``file://./data``), e.g. ``s3://bucket/prefix``;
- ``CATALOGUE_FX_URL``: the exchange-rate API (default ``http://127.0.0.1:8001``);
- ``CATALOGUE_DETECT_BLOCKING``: ``log`` (default), ``raise``, ``warn``, ``collect`` or ``off``;
  ``CATALOGUE_DETECT_ALLOW``: comma-separated patterns the detector lets through.

Run it with ``uvicorn --factory catalogue.main:create_app`` from ``examples/fastapi_app``.
"""
