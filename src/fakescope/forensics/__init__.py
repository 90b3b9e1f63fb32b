"""Model-free forensic views: pure image -> image functions with no torch dependency."""
from fakescope.forensics.ela import ela_image, ela_map
from fakescope.forensics.io import ImageLoadError, load_image

__all__ = ["ImageLoadError", "ela_image", "ela_map", "load_image"]
