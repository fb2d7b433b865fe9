"""Tools run as scripts (``python -m pisr_ros.tools.X``), apart from the library rooms."""
