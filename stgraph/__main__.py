"""``python -m stgraph ...`` is the ``stgraph`` command; ``torchrun --nproc-per-node K -m stgraph train ...``
starts ``K`` data-parallel training processes (see :mod:`stgraph.training.distributed`)."""
import sys

from .cli.main import main

sys.exit(main())
