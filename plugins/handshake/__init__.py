"""The built-in ``handshake`` plugin: handshake counts and RTT halves as ``CONNECTS`` edges.

Two halves with their own entry points: :mod:`.sensor` runs in the sensor, :mod:`.collector` in the
collector. This package module imports neither, so each process loads only its own half.
"""
