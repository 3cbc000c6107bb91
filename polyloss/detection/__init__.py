"""Detector loss recipes (built-in plugins): SSD, Faster R-CNN and YOLOv1."""
