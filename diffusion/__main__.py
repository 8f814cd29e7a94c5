"""``python -m diffusion``: see diffusion.cli.main."""

import sys

from diffusion.cli.main import main

sys.exit(main())
