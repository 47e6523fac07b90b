"""``python -m arkor.engine.serve_inference``: the control plane's inference worker.

See ``arkor.engine._inference_server`` for the protocol between the two.
"""

from __future__ import annotations

import sys

from arkor.engine._inference_server import main

if __name__ == "__main__":
    sys.exit(main())
