"""The built-in ``quality`` plugin: TCP path quality (retransmissions, fast and spurious ones,
out-of-order segments, SACK and D-SACK, zero windows, continuous RTT from timestamps) of a sample
of whole flows, merged into the ``CONNECTS`` edges.

Two halves with their own entry points: :mod:`.sensor` runs in the sensor, :mod:`.collector` in the
collector. This package module imports neither, so each process loads only its own half.
"""
