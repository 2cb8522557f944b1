"""Reading manifests into pictures: the static report, look-alike groups, and `diff`.

A report is a folder that opens from disk: a page (``assets/``, copied by ``page.py``)
and its data as script files. The same page serves the service's live gallery.
"""
