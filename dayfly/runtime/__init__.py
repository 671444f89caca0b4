"""Code that runs INSIDE the sandbox: the zygote and the instance loop. Standard library only."""
