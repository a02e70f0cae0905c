"""Files and their changes: the index, the watcher, gitignore rules and secrets.

The bottom layer: never imports ``engine``, ``completion``, ``lsp`` or the model runtime.
"""
