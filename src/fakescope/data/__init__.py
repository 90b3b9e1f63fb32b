"""Datasets: layout discovery, splits, preprocessing with an on-disk cache, and augmentation."""
from fakescope.data.discovery import Sample, discover_samples, iter_image_files
from fakescope.data.preprocess import Preprocess
from fakescope.data.splits import class_weights, stratified_split

__all__ = ["Preprocess", "Sample", "class_weights", "discover_samples", "iter_image_files", "stratified_split"]
