"""``python -m reprl`` (what torchrun launches): the same CLI as ``reprl``."""

import sys

from reprl.cli import main

sys.exit(main())
