"""SoundCTM: Sound Consistency Trajectory Models (library and benchmark suite).

Importing the package is cheap: it pulls in torch only. Ray, the metric packages and the
pretrained embedders are imported lazily by the modules that need them.
"""

__version__ = "0.1.0"
