"""``python -m asyncify_kit.scan PATHS... --format text|json|sarif``."""

import sys

from ._cli import main

sys.exit(main())
