import sys

from pgdog_ev.cli import main

sys.exit(main())
