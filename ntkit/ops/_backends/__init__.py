"""Backend implementations of the kernel primitive: numpy (reference), jax, native."""
