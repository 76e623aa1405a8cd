"""lora_course: the helper package of the course "Understanding LoRA and QLoRA".

``import lora_course`` loads torch only; transformers, bitsandbytes and peft are imported
inside the functions that need them, so the first cell of every notebook stays fast.
"""

from lora_course.data import load_task
from lora_course.lora import LoRALayer, add_lora, lora_layers
from lora_course.models import load_model, quantization_config
from lora_course.params import count_parameters, lora_parameter_count
from lora_course.train import evaluate, finetune, generate

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
