"""``python -m arkor.engine.worker``: run one training job for a control plane.

The one entry point every plane uses to start a job; see ``arkor.engine._worker``.
"""

from __future__ import annotations

import sys

from arkor.engine._worker import main

if __name__ == "__main__":
    sys.exit(main())
