"""Multi-camera person tracking: ``python run_pipeline.py --sources cam1.mp4 cam2.mp4 [--config ...]``.

See pipeline/cli.py for the flags (every config key is one) and pipeline/runner.py for the library API.
"""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main())
