"""Input capture: every input of a daemon run, written so that the run can be re-executed.

``[general] capture_inputs = true`` (with ``event_log`` set) makes the daemon write
``<event_log>.inputs`` next to its event log: accepts, the exact bytes of every read and their
chunk boundaries, connect results, timer firings, callback points, signals and entropy draws, each
with the clock reading the code saw. ``pgdog-ev replay --reexecute <event_log>`` feeds them back
through the production state machines (``sim.reexecute``) and checks that the same transitions
come out. :mod:`.format` is the file format, :mod:`.recorder` the daemon side, :mod:`.redact` what
is kept out of the file.
"""
