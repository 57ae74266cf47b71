"""Training: Ray Train workers holding the policy in DeepSpeed, rank 0's driver, and the training step.

Where to look (docs/architecture.md has the whole picture): `fit` starts a run; `loop` is the worker's step loop;
`driver` is rank 0's object (rollout engine, verifier pool, data, held-out tasks, MLflow); `rollouts` builds a
step's batch; `update` runs the update around the loss table in `objectives`; `types` holds the shared data types;
`microbatch`, `distributed`, `deepspeed_policy` and `checkpoint` are the machinery.
"""
