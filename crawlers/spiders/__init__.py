"""Spiders of the Kiln crawler; `python -m crawlers.run` runs the generic one."""
