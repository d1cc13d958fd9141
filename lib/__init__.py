"""Unsupervised semantic segmentation: PiCIE and the methods it is compared to."""
