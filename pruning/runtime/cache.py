"""Where cached work lives: `$PRUNING_CACHE_DIR`, else `~/.cache/pruning`.

Each kind of entry has its own folder under it (`tokens` for tokenised
text, `frozen-states` for a frozen encoder's outputs); every entry carries
its own digest and is recomputed, never used, when it does not match.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
  return Path(os.environ.get("PRUNING_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "pruning"))
