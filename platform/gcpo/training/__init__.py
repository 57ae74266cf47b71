"""Training: the policy worker (DeepSpeed), the loop body, and the trainer-side log-prob computation."""
