"""Ray Train / Tune trainables: `gcpo_train` re-exports the `gcpo` library's training entry point under a trainable's
name; the code is the library's, and the library never imports this package."""
