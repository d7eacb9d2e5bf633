"""The model service: the one owner of the loaded model, shared by every door.

``processor.py``  ``WhisperProcessor`` loads the engine, warms it up and runs a file (or live
                  samples) into typed events. What it shares between the jobs in flight:

``gate.py``     ``ModelGate``: one step of one decode at a time, live decodes first, then file
                steps in arrival order.
``budget.py``   ``AudioBudget``: the decoded samples of the jobs in flight, bounded together.
``holder.py``   ``ModelHolder``: the HTTP mode's load in the background, leases, idle unload.
``slots.py``    ``JobSlots``: the HTTP mode's admission (``MAX_QUEUE``) and its
                ``MAX_CONCURRENT_JOBS`` places where downloads, ffmpeg and decodes overlap.
``threads.py``  ``iterate_in_thread``: a blocking event generator read from the event loop.

Imports flow one way: doors (``handler.py``, ``src/server/``) -> service -> engines.
"""
