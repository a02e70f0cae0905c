"""The model: llama.cpp in-process or in a child process, a remote server, exact token counts.

Never imports ``completion``, ``lsp``, ``workspace`` or pygls.
"""

import os

# llama.cpp's CPU threads meet at OpenMP barriers, and OpenMP's default is to spin while waiting.
# On a laptop something else always holds a core now and then (the editor, a browser, a build):
# a spinning thread then burns its core while the thread it waits for is descheduled, and every
# barrier stalls. Waiting passively costs nothing measurable on an idle machine and wins as soon
# as another process is busy (`nearline bench threads` measures both; the figures are in the
# README and CHANGELOG). libgomp reads this when llama.cpp's library loads, so it is set here,
# before any engine module can import llama_cpp (those imports are all lazy), and the model
# processes started from here inherit it. A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
