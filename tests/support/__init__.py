"""Test support: fakes that behave correctly, and real-process fixtures."""
