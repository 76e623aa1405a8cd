"""The machinery: what the course needs to run and to measure, which a learner never has to read.

``parallel``         independent training runs side by side, one forked process per core (sweeps)
``hardware``         does this CPU compute bf16 natively? (QLoRA's compute dtype on a CPU)
``build_model``      rebuilds ``data/tiny-llama`` from scratch (``lora_course build-model``)
``doctor``           what works on this machine (``make doctor``, notebook 00)
``distributed``      ``python -m lora_course finetune``: data parallel under ``accelerate launch``
``memory_evidence``  one training step's memory measured in a fresh process (notebook 09, bench)
``loss_peaks``       the loss alone measured the same way, whole or in chunks (notebook 09)
``published``        the training-memory estimate against published figures (notebook 09)
``shape_true``       a real architecture's layout with random weights, built offline (real size)
``real_scale``       a shape-true Llama measured against the calculators (``make bench-real-scale``)

Nothing is imported here: ``import lora_course`` stays torch only.
"""
