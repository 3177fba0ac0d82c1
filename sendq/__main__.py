import sys

from sendq.cli import main

sys.exit(main())
