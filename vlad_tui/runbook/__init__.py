"""The deploy plan as data and the engine that runs it (no Textual here)."""
