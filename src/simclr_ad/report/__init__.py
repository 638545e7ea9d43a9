"""The inspection report: what a report shows (``data``), its verdict (``verdict``), how it is
drawn (``figures``, ``charts``, ``gallery``), and the self-contained HTML page around them
(``page``)."""
