"""Build the optional C extension; everything else about the package is in pyproject.toml.

``asyncify_kit.sql._rowcore`` (the C base of `Row`) is optional: without a C compiler the
install goes on and `Row` runs on its pure-Python base. ``ASYNCIFY_KIT_NO_EXTENSIONS=1``
skips the build on purpose (and, at run time, keeps an installed extension unused).
"""

import os

from setuptools import Extension, setup

NO_EXTENSIONS = os.environ.get("ASYNCIFY_KIT_NO_EXTENSIONS", "") not in ("", "0")

extensions = [
    Extension(
        "asyncify_kit.sql._rowcore",
        ["src/asyncify_kit/sql/_rowcore.c"],
        optional=True,  # a failed compile is a warning, not a failed install
    )
]

setup(ext_modules=[] if NO_EXTENSIONS else extensions)
