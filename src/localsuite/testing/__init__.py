"""Test support that ships with the package: fakes that speak the real protocols."""
