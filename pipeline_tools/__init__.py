"""Operator commands: detector export and checks, TensorRT engines, perf_analyzer, MOT replay, local pipeline."""
