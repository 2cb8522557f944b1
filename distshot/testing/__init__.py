"""Conformance suites and test helpers for distshot plug-in authors.

``distshot.testing.storage_suite.StorageConformance``: subclass it and provide a
``storage_factory`` fixture (and ``unusable_storage``) to prove a storage honours the
contract. Needs ``pip install 'distshot[test]'`` (pytest).
"""
