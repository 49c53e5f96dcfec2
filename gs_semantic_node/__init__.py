"""gs_semantic: discrete semantic objects from an incremental 3D Gaussian Splatting map."""

__version__ = "0.1.0"
