"""Built-in engines; each module is a plug-in registered through ``distshot_engines``."""
