"""The distillation method's building blocks: masks, losses, SpecAugment, curriculum (SPEC 2)."""
