"""The inspection report: what a report shows (``data``), how it is drawn (``figures``), and the
self-contained HTML page around them (``page``)."""
