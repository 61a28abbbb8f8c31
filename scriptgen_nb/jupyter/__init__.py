"""The Jupyter side: the %scriptgen magics, the progress panel and the charts."""
