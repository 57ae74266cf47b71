"""The config error and its "did you mean" hint, at the bottom of the import graph (this module imports no gcpo
module), so the presets, the config and the sweep spaces can all raise and word it the same way.

`gcpo.config` re-exports `ConfigError`; import it from there or from here, it is the same class.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class ConfigError(ValueError):
    """A config key or value is invalid; the message names the dotted key."""


def suggest(key: str, valid: Iterable[str], prefix: str = "") -> str:
    """The hint appended to an "unknown key" message: `; did you mean 'PREFIX+NEAREST'?` when one of `valid` is
    close to `key`, else `; valid keys: ...` listing them all (sorted, each with `prefix`)."""
    valid = list(valid)
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    if near:
        return f"; did you mean '{prefix}{near[0]}'?"
    return f"; valid keys: {', '.join(prefix + v for v in sorted(valid))}"
