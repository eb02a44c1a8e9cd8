"""Metrics and analyses: classification/segmentation/detection metrics, latent analysis, bias audits."""
