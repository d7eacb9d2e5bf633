"""``whisper-client``: see ``client/whisper_client/cli.py``."""

import sys

from whisper_client.cli import main

sys.exit(main())
