"""Helpers shared by the tests (importable: tests/conftest.py puts tests/ on sys.path)."""
