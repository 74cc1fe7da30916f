"""The task types that ship with Kiln, one package each (tasks.core.plugins says what one is)."""
