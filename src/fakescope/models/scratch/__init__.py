"""A CNN written from scratch on NumPy (CPU) or CuPy (GPU): the ELA-CNN with every gradient derived by hand.

Modules:

- ``backend``: picks the array module (CuPy when importable and a GPU is present, NumPy otherwise);
- ``layers``: Conv2D (im2col), BatchNorm2D (train/eval, running statistics), ReLU, MaxPool2D, Flatten, Dense,
  Dropout, each a pure ``forward``/``backward`` pair;
- ``losses``: softmax cross-entropy; ``optim``: SGD, Adam, gradient-norm clipping, exponential decay;
- ``network``: :class:`ScratchNet`, a self-contained NumPy network with its own training step;
- ``module``: the registered detector ``scratch-cnn``.

Design. The pure :class:`ScratchNet` trains with nothing but the array module. To make the same network a
first-class fakescope detector (``fakescope train --model scratch-cnn``, checkpoints, ``Detector``, scan,
evaluate, Grad-CAM), :class:`ScratchCNN` is an ``nn.Module`` whose submodules hold each layer's arrays as torch
parameters and buffers (zero-copy NumPy views on CPU) and call the layer through a ``torch.autograd.Function``
whose backward is the layer's hand-written backward. So fakescope's optimiser and loop drive it, the state dict has
the PyTorch ELA-CNN's keys and shapes (weights move between the three implementations unchanged), and the arithmetic
is the scratch code's. The tests compare every layer, and one full training step, with PyTorch in float64.
Limits: mixed precision is a no-op (NumPy has no bfloat16), no ONNX export, CUDA needs CuPy.
"""
from fakescope.models.scratch.module import ScratchCNN, ScratchLayer
from fakescope.models.scratch.network import ScratchNet, build_ela_cnn, train_step

__all__ = ["ScratchCNN", "ScratchLayer", "ScratchNet", "build_ela_cnn", "train_step"]
