"""Ray Train / Tune trainables: thin wrappers that build the config and call the `gcpo` library."""
