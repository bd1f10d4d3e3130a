"""JSON that every reader accepts: NaN and infinities (a diverged run's loss) become null."""

import json
import math


def finite(v):
    """v with every NaN or infinite float made None, through dicts, lists and tuples."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [finite(x) for x in v]
    return v


def dumps(v, **kw):
    """Strict JSON text of v (objects json cannot write, such as numpy scalars or paths, as their str)."""
    return json.dumps(finite(v), allow_nan=False, default=lambda o: finite(o.item()) if hasattr(o, "item")
                      else str(o), **kw)
