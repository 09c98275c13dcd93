"""Make the example importable from its source tree: the package is not installed into the
project's virtualenv (tests/integration/test_example_provider.py installs it as a vendor would)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
