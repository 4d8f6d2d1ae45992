"""Running a trained model: Segmenter, Instances, backends, pre- and post-processing."""
