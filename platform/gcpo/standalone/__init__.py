"""Standalone model jobs: command back-ends that work on a model or a run's checkpoint in one process, outside
the Ray Train run.

`export` (`gcpo export`: a committed checkpoint as a Hugging Face folder, CPU only, no Ray), `probe` (`gcpo probe`:
one batch, the gradient under each value of a switch, through the update's own code) and `warmstart`
(`gcpo warmstart`, and the built-in `model.name=smollm2-warmstart`: supervised fine-tuning on golden answers,
saved as a Hugging Face folder). They use pieces of `gcpo.training` (the update, the checkpoint layout, LoRA) but
are not part of a training run: `gcpo.training` never imports them.
"""
