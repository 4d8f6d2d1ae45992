"""COCO-format data: dataset, transforms, synthetic dataset writer."""
