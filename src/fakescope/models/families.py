"""Every detector family; importing this module registers them all (:mod:`fakescope.registry` does, on its first
look-up)."""
from fakescope.models import (  # noqa: F401
    backbones,  # timm backbones: resnet, vgg, densenet, xception, efficientnet(-lite)
    ela_cnn,  # the classic ELA-CNN
    hybrid,  # ResNet + DenseNet
    npr,  # trace detectors: npr, npr_resnet18
    scratch,  # scratch-cnn, the from-scratch NumPy/CuPy CNN
    spectral,  # spectral
    srm,  # srm, bayar
    temporal,  # frame CNN + bidirectional LSTM over video clips
)

__all__ = ["backbones", "ela_cnn", "hybrid", "npr", "scratch", "spectral", "srm", "temporal"]
