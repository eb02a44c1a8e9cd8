"""Tests of the MONAI bundles under ``bundles/``."""
