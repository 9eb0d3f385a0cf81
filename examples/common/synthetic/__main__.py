"""``python -m examples.common.synthetic ...``, or by path: ``python examples/common/synthetic ...``."""

import sys
from pathlib import Path

if not __package__:  # run by path: Python put this folder first on sys.path; import the package instead
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(here.parents[2]))

from examples.common.synthetic.cli import main

sys.exit(main())
