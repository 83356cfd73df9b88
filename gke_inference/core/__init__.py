"""The core: errors, validation, settings, stack config, the outputs contract.

Imports nothing of the project above it (only the accelerator catalog, which is data).
"""
