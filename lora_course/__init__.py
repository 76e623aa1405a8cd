"""lora_course: the helper package of the course "Understanding LoRA and QLoRA".

``import lora_course`` loads torch only; transformers, bitsandbytes and peft are imported
inside the functions that need them, so the first cell of every notebook stays fast.
"""

from lora_course.lora import LoRALayer, add_lora, lora_layers
from lora_course.params import count_parameters, lora_parameter_count

__version__ = "0.1.0"

__all__ = [
    "LoRALayer",
    "add_lora",
    "lora_layers",
    "count_parameters",
    "lora_parameter_count",
]
