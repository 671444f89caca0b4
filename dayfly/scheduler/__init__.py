"""Routes invocations to per-version pools of instances: reuse, start, queue, reap."""
