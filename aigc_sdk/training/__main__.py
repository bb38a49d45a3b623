"""``python -m aigc_sdk.training NAME [options]``: ``aigc train`` without the CLI script.

Handy under ``torchrun`` (``torchrun --nproc_per_node=2 -m aigc_sdk.training
NAME ...``) and wherever the ``aigc`` script is not on the PATH. The command
line is the CLI's (aigc_sdk/cli/train.py): this entry point is a door to it, as
the script is, and no library code imports it.
"""

import sys

from ..cli.train import module_main as main

if __name__ == "__main__":
    sys.exit(main())
