"""``python -m src.client``: see ``src/client/cli.py``."""

import sys

from src.client.cli import main

sys.exit(main())
