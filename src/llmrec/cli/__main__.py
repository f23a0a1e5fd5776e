"""``python -m llmrec.cli ...`` (how torchrun and accelerate launch the command): the same as ``llmrec ...``."""

from llmrec.cli import main

main()
