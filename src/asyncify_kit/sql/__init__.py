"""One async SQL API over PostgreSQL, MySQL/MariaDB and SQLite, chosen by URL.

```python
from asyncify_kit.sql import Database

async with Database("sqlite:///./app.db") as db:
    await db.execute("create table if not exists t (id integer primary key, name text)")
    await db.execute("insert into t (name) values (:name)", {"name": "ada"})
    row = await db.fetch_one("select * from t where name = :name", {"name": "ada"})
    print(row.id, row["name"])
```

Backends (URL schemes): ``postgresql+asyncpg`` (default for ``postgresql``),
``postgresql+psycopg``, ``postgresql+psycopg2`` (threaded), ``mysql+asyncmy`` (default for
``mysql`` and ``mariadb``), ``mysql+aiomysql``, ``mysql+pymysql`` (threaded) and ``sqlite``.
Parameters are always ``:name`` with a mapping. Errors are the `DatabaseError` tree of
`asyncify_kit.exceptions`, re-exported here. `SPEEDUPS` is True when `Row` runs on its
compiled C base, False on the pure-Python one (no compiler at install, or
``ASYNCIFY_KIT_NO_EXTENSIONS`` set).
"""

from ..exceptions import ConnectionLost as ConnectionLost
from ..exceptions import DatabaseError as DatabaseError
from ..exceptions import IntegrityError as IntegrityError
from ..exceptions import OperationalError as OperationalError
from ..exceptions import ProgrammingError as ProgrammingError
from ..exceptions import QueryTimeout as QueryTimeout
from ._database import Database as Database
from ._database import DatabaseConnection as DatabaseConnection
from ._database import Transaction as Transaction
from ._row import SPEEDUPS as SPEEDUPS
from ._row import Row as Row
from ._types import IsolationLevel as IsolationLevel
from ._types import Json as Json
from ._types import PoolStats as PoolStats

__all__ = [
    "SPEEDUPS",
    "ConnectionLost",
    "Database",
    "DatabaseConnection",
    "DatabaseError",
    "IntegrityError",
    "IsolationLevel",
    "Json",
    "OperationalError",
    "PoolStats",
    "ProgrammingError",
    "QueryTimeout",
    "Row",
    "Transaction",
]
