"""Multi-camera person tracking: ``python run_pipeline.py --sources cam1.mp4 cam2.mp4 [--config ...]``.

See pipeline/cli.py for the flags (every config key is one) and pipeline/runner.py for the library API.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
