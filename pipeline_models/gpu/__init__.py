"""GPU stages of the ``gpu`` profile (PyTorch + torchvision). Imported only by the gpu adapters, the GPU
benchmark and ``tests/gpu``; the CPU profiles and ``make test`` never import torch."""
