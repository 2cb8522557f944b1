"""Plug-in hooks (``hookspecs``) and the registry that loads them (``manager``)."""
