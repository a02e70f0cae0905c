"""A request's life: answer from cache, gate, compose the prompt, generate, clean and check.

Imports ``engine``, ``workspace`` and ``weights``; never pygls or ``lsp``.
"""
