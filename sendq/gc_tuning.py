"""Garbage-collector tuning for long-running sendq processes.

A process starts with about 90,000 long-lived objects the collector tracks (phonenumbers' metadata, pydantic's
schemas, FastAPI's routes) that are never garbage. Bulk intake and dispatch allocate many objects per message, so
the collector runs often, and each full collection walks every one of those startup objects again. Freezing them
(``gc.freeze``) moves them out of the collector's sight for good. Measured on 50,000 messages posted in process to
``POST /v1/batches`` on a 2-core machine: 4,457 → 5,035 messages/s, the collector's other settings unchanged.
"""

import gc


def freeze_startup_objects() -> None:
    """Collect what start-up left behind, then keep everything alive now out of later collections.

    Call once per process, when it is ready to serve (``sendq api`` and each of its processes, ``sendq worker``).
    Not in code that runs many times per process (an app's lifespan or a worker's start-up in tests): whatever is
    alive then would be kept from every later collection.
    """
    gc.collect()
    gc.freeze()
