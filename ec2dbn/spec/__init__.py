"""What a user writes, checked offline: the Stack model and launch overrides, job files and examples, the
catalog (types, GPUs, dated prices), cost estimates, the memory check, and the bake's inputs and hash.
Touches no cloud and no instance."""
