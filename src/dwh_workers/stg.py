"""`python -m dwh_workers.stg`: the STG layer worker (see :mod:`dwh_workers.app`)."""

import sys

from dwh_workers.app import main

if __name__ == "__main__":
    sys.exit(main("stg"))
