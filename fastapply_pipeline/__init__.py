"""fastapply-pipeline: open-source repositories -> Fast Apply edit triples -> datasets -> LoRA adapters."""

__version__ = "0.1.0"
