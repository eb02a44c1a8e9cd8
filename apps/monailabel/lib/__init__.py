"""The medglass MONAI Label app's modules (MONAI Label puts the app folder on ``sys.path`` and
imports ``lib`` from it, as its sample apps do)."""
