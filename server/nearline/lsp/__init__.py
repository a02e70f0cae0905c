"""The language server: state, protocol fixes, handlers, commands and progress.

The only package that imports pygls (besides the test client in ``tools``); everything it
answers is delegated to ``completion``.
"""
