"""Deployment beyond one machine: the Compose file, the container health probe, and
the step that puts the bundled GGUF where llama.cpp's image reads models.

`deploy/compose.yml` and `deploy/compose.gpu.yml` are rendered by `compose.py` from the
same facts as the one-machine mode (the settings, the presets, the ports); the tests
check that the files in the repository are what the module renders.
"""
