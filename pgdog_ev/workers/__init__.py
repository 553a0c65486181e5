"""Several worker processes for one daemon: ``[general] workers = N``.

``supervisor`` starts and watches the workers and speaks for them (signals, systemd, metrics);
``link`` is a worker's end of its private channel; ``channel`` frames the messages on both ends;
``share`` divides the pool sizes and encodes the worker in client ids; ``main`` is the hidden
``pgdog-ev worker`` command the supervisor runs.
"""
