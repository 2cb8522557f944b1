"""distshot's HTTP service (``distshot serve``)."""
