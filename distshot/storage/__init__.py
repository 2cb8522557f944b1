"""Built-in storages; each module is a plug-in registered through ``distshot_storages``."""
