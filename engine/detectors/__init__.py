"""Real detectors that produce model runs from a dataset's local images (optional extras).

    hog   OpenCV's built-in HOG + linear-SVM people detector (``pip install 'loupe[hog]'``)
"""
from .hog import HogParams, hog_predictions, run_hog

__all__ = ["HogParams", "hog_predictions", "run_hog"]
