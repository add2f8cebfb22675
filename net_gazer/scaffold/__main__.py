"""``python -m net_gazer.scaffold``: the same as ``net-gazer-plugin``."""

import sys

from net_gazer.scaffold import main

sys.exit(main())
