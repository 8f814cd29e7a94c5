"""``python -m diffusion``: see diffusion.cli."""

import sys

from diffusion.cli import main

sys.exit(main())
