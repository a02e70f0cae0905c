"""The model: llama.cpp in-process or in a child process, a remote server, exact token counts.

Never imports ``completion``, ``lsp``, ``workspace`` or pygls.
"""
