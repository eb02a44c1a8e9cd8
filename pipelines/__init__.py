"""Ignite/MONAI workflows, folder ingestion, MLflow wiring and the ``medglass`` command line."""
