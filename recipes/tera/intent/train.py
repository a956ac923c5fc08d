"""TERA downstream: intent classification with a frozen upstream (a TERA checkpoint, or log-mel as the baseline).

    python recipes/tera/intent/train.py recipes/tera/intent/configs/synth.yaml [key=value ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tera_downstream import main  # noqa: E402

if __name__ == "__main__":
    main(sys.argv[1:], __doc__)
