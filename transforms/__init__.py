"""I/O readers and MONAI-style transforms for medglass.

Array transforms work on one channel-first image; their dictionary twins (``...d``)
loop over keys and draw randomness once per call.
"""

from transforms.keys import Keys

__all__ = ["Keys"]
