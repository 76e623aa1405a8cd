"""lora_course: the helper package of the course "Understanding LoRA and QLoRA".

Where each idea of the lesson lives (the modules a learner reads beside the notebooks):

The math
    ``lora``             ``LoRALayer`` (W + BA, B at zero) and ``add_lora`` for whole models (01)
    ``params``           trainable vs total parameters, r * (in + out), real architectures (01, 02)
    ``scaling``          alpha / r (LoRA) vs alpha / sqrt(r) (rsLoRA) (02)
    ``nf4``              NF4 from scratch, byte for byte as bitsandbytes; double quantization (04)
The model
    ``models``           ``load_model`` the lesson's way: ``from_pretrained(quantization_config=)``
    ``memory``           a model's bytes in each precision, from its architecture (02, 03, 06)
    ``training_memory``  peak training memory part by part, on one or N devices (09)
    ``data``             the tiny model's corpus and the fine-tuning task
    ``train``            the training loop, held-out evaluation, generation
    ``sweep``            one fine-tuning run per (rank, alpha) setting, several seeds (02b, 07)
    ``adapters``         save, load, merge and switch adapters in PEFT's format (08)
Showing it
    ``plots``            every figure; ``widgets`` the interactive views; ``toy`` a toy regression

Tools, one level down (a learner never has to read them):
    ``checks``           ``check("exercise_N", ...)``: the exercises' feedback, also the grader's
    ``classroom``        the instructor's tools: release, grading, gradebook, reports, slides,
                         and their commands (``classroom.cli``)
    ``machinery``        process pools, hardware probes, the tiny model's build, the doctor,
                         distributed launch, memory measurements (see its ``__init__``)
    ``__main__``         ``python -m lora_course <command>``

``import lora_course`` loads torch only; transformers, bitsandbytes and peft are imported
inside the functions that need them, so the first cell of every notebook stays fast.
"""

import logging
import warnings

# bitsandbytes' CPU backend logs a warning when the optional `kernels` package (which would
# download a kernel from a hub) is absent; the built-in CPU kernels are used instead and work.
# The course runs offline on purpose, so that notice is noise for learners.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
# peft's prepare_model_for_kbit_training reads an attribute transformers 5 deprecates; the
# warning is for peft's authors, not for learners.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

from lora_course.data import load_task  # noqa: E402
from lora_course.lora import LoRALayer, add_lora, lora_layers  # noqa: E402
from lora_course.models import load_model, quantization_config  # noqa: E402
from lora_course.params import count_parameters, lora_parameter_count  # noqa: E402
from lora_course.train import evaluate, finetune, generate  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "LoRALayer",
    "add_lora",
    "lora_layers",
    "count_parameters",
    "lora_parameter_count",
    "load_model",
    "quantization_config",
    "load_task",
    "finetune",
    "evaluate",
    "generate",
]
