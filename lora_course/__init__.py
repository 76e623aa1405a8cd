"""lora_course: the helper package of the course "Understanding LoRA and QLoRA".

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
