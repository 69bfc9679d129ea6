"""The optional C core of `asyncify_kit.sql.Row` (source: ``_rowcore.c``)."""

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from typing_extensions import Self

_R = TypeVar("_R", bound=RowBase)

class RowBase:
    """The two references a row holds: the shared name table and the driver's record."""

    def __new__(cls, keys: Mapping[str, int], values: Sequence[Any]) -> Self: ...
    @property
    def _keys(self) -> Mapping[str, int]: ...
    @property
    def _values(self) -> Sequence[Any]: ...

def rows_of(
    cls: type[_R], keys: Mapping[str, int], records: Sequence[Sequence[Any]], /
) -> list[_R]:
    """One *cls* instance per record, all sharing *keys*."""
