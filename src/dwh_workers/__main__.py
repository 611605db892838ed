import sys

from dwh_workers.cli import main

sys.exit(main())
