"""Training (paper §IV): SOLOv2 targets, the Eq. 6 losses, the schedule and the loop."""

from csrinfer.train.loop import train

__all__ = ["train"]
