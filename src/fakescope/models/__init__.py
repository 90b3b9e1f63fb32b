"""Detector architectures (``nn.Module`` s and their factories), one family per file, each registering its members
with ``@register_detector`` (:mod:`._registry`). The package itself imports none of them, so reading the registry
needs no PyTorch; :mod:`.families` imports them all.
"""
