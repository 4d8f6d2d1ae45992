"""Bring weights trained elsewhere into csrinfer checkpoints (``csrinfer convert``)."""
