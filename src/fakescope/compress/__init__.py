"""Model compression: pruning, knowledge distillation and quantization, each reported before and after.

``prune`` (:mod:`.prune`), ``distill`` (:mod:`.distill`) and ``quantize`` (:mod:`.quantize`) write ordinary
fakescope checkpoints (or an ONNX file) that every command loads; :mod:`.report` measures size, accuracy, ROC-AUC
and images/s on the same held-out images for each variant.
"""
