"""The glass-box autoencoder-classifier family (tiny/small/base, 2D/3D) and its blocks."""
