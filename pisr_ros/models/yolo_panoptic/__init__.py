"""YOLO-Panoptic (Diaz-Zapata 2020): spec, network, RoIAlign. See network.py."""
