"""scriptgen_nb: run large batches of Gemini generation requests from Jupyter, Python or a terminal."""

from __future__ import annotations

__version__ = "0.1.0"
