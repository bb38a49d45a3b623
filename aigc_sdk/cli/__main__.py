"""``python -m aigc_sdk.cli ...``: the ``aigc`` command where the script is not on
the PATH (and under ``torchrun -m aigc_sdk.cli train ...``)."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
