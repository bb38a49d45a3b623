"""Benchmarks: ``pytest benchmarks/`` (pytest-benchmark cases), scripts run as
``python benchmarks/NAME.py``, and the scripts' tests in ``benchmarks/tests``.

A package so that its conftest.py is ``benchmarks.conftest`` and never stands in
for tests/conftest.py when one run collects both.
"""
