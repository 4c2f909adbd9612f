"""`python -m jepa_demo ...`: see `jepa_demo.cli`."""

import sys

from .cli import main

sys.exit(main())
