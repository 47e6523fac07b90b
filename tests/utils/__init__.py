"""Factories and runners shared by the tests."""
