"""``python -m simclr_ad`` (also what ``torchrun -m simclr_ad`` runs)."""

import sys

from simclr_ad.cli import main

sys.exit(main())
