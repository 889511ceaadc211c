"""The ``trtexec`` arguments that build the ``tensorrt`` profile's detector plan from an ONNX file.

The input name and per-sample dims come from the profile's rendered detector config (one source), the
batch range from the caller: ``--minShapes/--optShapes/--maxShapes=images:Bx3x640x640``. With
``--check-onnx`` the ONNX file's tensors are compared with the config first (names, dtypes, fixed dims),
so a mismatch fails before the engine build, not at load.

Usage (``make engine`` runs it): ``python -m pipeline_tools.engine --onnx IN.onnx --plan OUT.plan
[--min 1 --opt 8 --max 32] [--fp16] [--profile tensorrt] [--set key=value] [--check-onnx PATH]``
prints the arguments on one line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline_config.render import RenderError, add_override_argument, load_profile, parse_overrides
from pipeline_config.tensor_specs import ModelSpecs, compare_specs, specs_from_onnx
from pipeline_tools.check_detector import expected_specs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchRange:
    """The engine's dynamic batch profile: smallest, tuned-for and largest batch."""

    min: int = 1
    opt: int = 8
    max: int = 32

    def check(self, max_batch_size: int) -> None:
        """Raises ``ValueError`` unless ``1 <= min <= opt <= max`` and ``max >= max_batch_size``
        (Triton's dynamic batcher sends batches up to the config's ``max_batch_size``)."""
        if not 1 <= self.min <= self.opt <= self.max:
            raise ValueError(f"need 1 <= MIN <= OPT <= MAX, got {self.min}, {self.opt}, {self.max}")
        if self.max < max_batch_size:
            raise ValueError(
                f"MAX {self.max} is below the profile's max_batch_size {max_batch_size}: Triton would send "
                "batches the engine cannot take (raise MAX or --set max_batch_size)"
            )
        if self.min > 1:
            log.warning("MIN %d > 1: batches smaller than %d (e.g. one camera) will fail", self.min, self.min)


def trtexec_args(specs: ModelSpecs, onnx: str, plan: str, batch: BatchRange, fp16: bool = False) -> list[str]:
    """``trtexec`` arguments for a plan with one dynamic-batch optimisation profile.

    Args:
        specs: the detector's expected tensors (one input, batch dim first).
        onnx: ONNX path as ``trtexec`` sees it.
        plan: where ``trtexec`` writes the engine.
        batch: the batch range.
        fp16: allow FP16 kernels (the bindings stay FP32).
    """
    if len(specs.inputs) != 1:
        raise ValueError(f"expected one detector input, got {[str(t) for t in specs.inputs]}")
    tensor = specs.inputs[0]
    sample = "x".join(str(d) for d in tensor.shape[1:])
    if any(d < 0 for d in tensor.shape[1:]):
        raise ValueError(f"{tensor}: a TensorRT profile needs fixed per-sample dims")
    args = [f"--onnx={onnx}", f"--saveEngine={plan}"]
    for flag, size in (("minShapes", batch.min), ("optShapes", batch.opt), ("maxShapes", batch.max)):
        args.append(f"--{flag}={tensor.name}:{size}x{sample}")
    if fp16:
        args.append("--fp16")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: prints the ``trtexec`` arguments on one line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", required=True, help="ONNX path as trtexec sees it")
    parser.add_argument("--plan", required=True, help="engine path as trtexec sees it")
    parser.add_argument("--min", type=int, default=BatchRange.min)
    parser.add_argument("--opt", type=int, default=BatchRange.opt)
    parser.add_argument("--max", type=int, default=BatchRange.max)
    parser.add_argument("--fp16", action="store_true")
    parser.add_argument("--profile", default="tensorrt")
    add_override_argument(parser)
    parser.add_argument(
        "--check-onnx", type=Path, metavar="PATH", help="compare this ONNX file with the config"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        overrides = parse_overrides(args.overrides)
        specs = expected_specs(args.profile, overrides)
        batch = BatchRange(args.min, args.opt, args.max)
        batch.check(int(load_profile(args.profile, overrides).values["max_batch_size"]))
        if args.check_onnx is not None:
            problems = compare_specs(specs, specs_from_onnx(args.check_onnx), exact=False)
            if problems:
                raise ValueError(
                    f"{args.check_onnx} does not fit the {args.profile} profile's detector config:\n  "
                    + "\n  ".join(problems)
                )
        print(" ".join(trtexec_args(specs, args.onnx, args.plan, batch, args.fp16)))
    except (RenderError, ValueError) as exc:
        print(f"engine: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
