"""Real scale on a CPU: a shape-true Llama-3.2-1B measured against the calculators.

``measure(name)`` builds (or reuses) a shape-true folder of ``name``
(``lora_course.machinery.shape_true``: the real layout, random weights, bf16), then, one fresh
process at a time (``memory_evidence.measure_step``):

- loads it in fp32, bf16, int8 and nf4 with double quantization and records
  ``get_memory_footprint()`` and the quantization state beside ``memory.weight_footprint``;
- trains one step of LoRA (fp32 base) and QLoRA (nf4, prepared) at batch 1 x 128 and 1 x 512,
  with and without gradient checkpointing, and records each part (weights, trainable
  parameters, optimizer state, saved for backward, the step's peak above its baseline) beside
  ``training_memory``'s estimate, with the seconds of the step.

The results are saved as JSON (``RESULTS_DIR / <name>-cpu.json``) with the command that
regenerates them; ``reprice(results)`` prices every row again with today's calculators, so a
test sees when an estimate no longer matches the one saved beside a measurement. When the
estimator changes on purpose, ``update_estimates`` (``python benchmarks/real_scale.py
--reprice``) writes today's estimates beside the measurements it keeps, and records the date
(``estimates_priced``); a measurement is only ever changed by measuring again.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import pandas as pd
import torch

__all__ = [
    "RESULTS_DIR",
    "COMMAND",
    "FOOTPRINT_SCHEMES",
    "STEP_SPECS",
    "results_path",
    "measure",
    "load_results",
    "footprint_table",
    "step_table",
    "reprice",
    "update_estimates",
    "over_by_gradients",
]

RESULTS_DIR = Path(__file__).resolve().parents[2] / "data" / "measurements"
COMMAND = "make bench-real-scale"  # runs: python benchmarks/real_scale.py --model Llama-3.2-1B
FOOTPRINT_SCHEMES = ("fp32", "bf16", "int8", "nf4+dq")
STEP_SPECS = tuple(
    {"method": method, "batch": 1, "seq_len": seq, "checkpointing": gc}
    for method in ("lora", "qlora")
    for seq in (128, 512)
    for gc in (False, True)
)
_KEEP = torch.bfloat16  # the shape-true checkpoint's dtype: what int8/nf4 keep unquantized


def results_path(name: str = "Llama-3.2-1B") -> Path:
    return RESULTS_DIR / f"{name}-cpu.json"


def _estimated_footprint(name: str, scheme: str) -> dict:
    from lora_course.memory import weight_footprint

    fp = weight_footprint(name, scheme, keep_dtype=_KEEP)
    return {"footprint": fp.footprint_bytes, "quant_state": fp.quant_state_bytes}


def _estimated_step(name: str, spec: dict, measured: dict) -> dict:
    from lora_course.machinery.memory_evidence import step_comparison

    table = step_comparison({**spec, "config": name}, measured)
    return dict(zip(table["part"], table["estimated_bytes"].astype(int).tolist(), strict=True))


def measure(
    name: str = "Llama-3.2-1B",
    steps=STEP_SPECS,
    schemes=FOOTPRINT_SCHEMES,
    out: str | Path | None = None,
    progress=print,
    resume: bool = False,
) -> dict:
    """Measure ``name`` (see the module docstring), one process at a time; save and return the
    results. The figures are written after each measurement, so an interrupted run keeps what it
    measured; ``resume`` keeps the rows of an earlier run in ``out`` and measures the rest."""
    from lora_course.machinery.hardware import check_memory
    from lora_course.machinery.memory_evidence import measure_step
    from lora_course.machinery.shape_true import shape_true_model
    from lora_course.memory import weight_footprint

    folder = shape_true_model(name, "bf16")
    out = Path(out) if out is not None else results_path(name)
    results = {
        "model": name,
        "what": f"shape-true {name}: the real layout, random weights (bf16 folder)",
        "command": f"{COMMAND}  (python benchmarks/real_scale.py --model {name})",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs shared with other jobs; "
        "each step on 1 torch thread",
        "versions": _versions(),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "footprints": [],
        "steps": [],
    }

    if resume and out.is_file():  # keep what an earlier run measured; measure the rest
        earlier = json.loads(out.read_text())
        results["footprints"], results["steps"] = earlier["footprints"], earlier["steps"]
        done = {r["scheme"] for r in earlier["footprints"]}
        schemes = [s for s in schemes if s not in done]
        steps = [s for s in steps if dict(s) not in [r["spec"] for r in earlier["steps"]]]

    def save():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n")

    for scheme in schemes:
        check_memory(weight_footprint(name, scheme, keep_dtype=_KEEP).total_bytes, scheme)
        got = measure_step({"model": str(folder), "footprint": scheme})
        row = {"scheme": scheme, "measured": got, "estimated": _estimated_footprint(name, scheme)}
        results["footprints"].append(row)
        progress(f"{name} {scheme}: {got['footprint']:,} B measured, "
                 f"{row['estimated']['footprint']:,} B estimated")  # fmt: skip
        save()
    for spec in steps:
        got = measure_step({**spec, "model": str(folder)})
        row = {"spec": dict(spec), "measured": got, "estimated": _estimated_step(name, spec, got)}
        results["steps"].append(row)
        est = row["estimated"]["step above baseline"]
        progress(f"{name} {spec}: step {got['step']:,} B measured, {est:,} B estimated, "
                 f"{got['seconds']:.1f} s")  # fmt: skip
        save()
    return results


def _versions() -> dict:
    import bitsandbytes
    import peft
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "bitsandbytes": bitsandbytes.__version__,
    }


def load_results(name: str = "Llama-3.2-1B", path: str | Path | None = None) -> dict:
    """The saved results of ``measure(name)``."""
    path = Path(path) if path is not None else results_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"no measurements at {path}: run `{COMMAND}`")
    return json.loads(path.read_text())


def footprint_table(results: dict) -> pd.DataFrame:
    """One row per scheme: measured and estimated ``get_memory_footprint()`` and quantization
    state (bytes), whether they are equal, and the seconds the load took."""
    rows = []
    for row in results["footprints"]:
        m, e = row["measured"], row["estimated"]
        rows.append(
            {
                "scheme": row["scheme"],
                "get_memory_footprint": m["footprint"],
                "calculator": e["footprint"],
                "quant state measured": m["quant_state"],
                "quant state calculator": e["quant_state"],
                "equal": m["footprint"] == e["footprint"] and m["quant_state"] == e["quant_state"],
                "load s": round(m["load_seconds"], 1),
            }
        )
    return pd.DataFrame(rows)


def step_table(results: dict) -> pd.DataFrame:
    """One row per training step: method, tokens, checkpointing, the step's peak above its
    baseline measured and estimated (MB), their ratio (``est / meas``), the ratios of the
    tensors saved for backward (``saved, est / meas``) and of the weights, seconds."""
    rows = []
    for row in results["steps"]:
        spec, m, e = row["spec"], row["measured"], row["estimated"]
        rows.append(
            {
                **_step_key(spec),
                "measured MB": round(m["step"] / 1e6),
                "estimated MB": round(e["step above baseline"] / 1e6),
                "est / meas": round(e["step above baseline"] / m["step"], 3),
                "saved, est / meas": round(e["saved for backward"] / m["saved"], 4),
                "weights, est / meas": round(e["weights"] / m["weights"], 4),
                "seconds": round(m["seconds"], 1),
            }
        )
    return _in_step_order(rows)


def over_by_gradients(results: dict) -> pd.DataFrame:
    """Per step: how far the estimated peak is above the measured one, beside the bytes of the
    adapters' gradients (MB). The estimate counts the gradients at every moment; at the
    logits' moment, when the backward pass starts, none exists yet
    (``zero_grad(set_to_none=True)``)."""
    rows = [
        {
            **_step_key(row["spec"]),
            "estimate over MB": round(
                (row["estimated"]["step above baseline"] - row["measured"]["step"]) / 1e6, 1
            ),
            "gradients MB": round(row["measured"]["trainable"] / 1e6, 1),  # fp32, as the adapters
        }
        for row in results["steps"]
    ]
    return _in_step_order(rows)


_STEP_KEY = ["method", "tokens", "checkpointing"]


def _step_key(spec: dict) -> dict:
    return {
        "method": spec["method"],
        "tokens": f"{spec['batch']} x {spec['seq_len']}",
        "checkpointing": spec["checkpointing"],
    }


def _in_step_order(rows: list[dict]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame(columns=_STEP_KEY)
    return pd.DataFrame(rows).sort_values(_STEP_KEY, key=_natural).reset_index(drop=True)


def _natural(column: pd.Series) -> pd.Series:
    # "1 x 128" before "1 x 512"; booleans and names as they are
    if column.name == "tokens":
        return column.map(lambda t: tuple(int(x) for x in t.split(" x ")))
    return column


def _estimates_today(results: dict):
    """(row, today's estimate) for every saved footprint and step row of ``results``."""
    name = results["model"]
    for row in results["footprints"]:
        yield row, _estimated_footprint(name, row["scheme"])
    for row in results["steps"]:
        yield row, _estimated_step(name, row["spec"], row["measured"])


def reprice(results: dict) -> pd.DataFrame:
    """Every saved estimate beside today's calculators' estimate of the same row.

    Columns: ``row``, ``part``, ``saved`` (bytes saved with the measurement), ``now``.
    """
    rows = [
        (row.get("scheme") or json.dumps(row["spec"]), part, saved, now[part])
        for row, now in _estimates_today(results)
        for part, saved in row["estimated"].items()
    ]
    return pd.DataFrame(rows, columns=["row", "part", "saved", "now"])


def update_estimates(name: str = "Llama-3.2-1B", path: str | Path | None = None) -> dict:
    """Write today's calculators' estimates beside the measurements saved for ``name`` (they
    are kept as measured) and the date they were priced; return the results."""
    path = Path(path) if path is not None else results_path(name)
    results = load_results(name, path)
    for row, now in list(_estimates_today(results)):
        row["estimated"] = now
    results["estimates_priced"] = time.strftime("%Y-%m-%d", time.gmtime())
    path.write_text(json.dumps(results, indent=1) + "\n")
    return results
