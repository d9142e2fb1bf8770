"""`python -m s4dc.report OUT/ [--json] [--html]`."""
import sys

from s4dc.report import main

sys.exit(main())
