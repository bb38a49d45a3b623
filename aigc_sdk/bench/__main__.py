"""python -m aigc_sdk.bench: the same as `aigc bench`."""

import sys

from . import main

sys.exit(main())
