"""The model catalog, and downloading and verifying model files.

Imports nothing else of Nearline's.
"""
