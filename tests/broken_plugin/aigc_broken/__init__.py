"""Deliberately broken plugins for the isolation tests."""
