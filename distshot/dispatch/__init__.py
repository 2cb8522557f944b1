"""The client side: the dispatcher (send with a window, collect replies) and embedded mode."""
