"""The built-in ``dpi`` plugin: host names from TLS SNI, HTTP Host headers and DNS answers, as
``Host.name`` and the bounded ``Host.names``. ``--no-dpi`` turns it off.

Two halves with their own entry points: :mod:`.sensor` runs in the sensor, :mod:`.collector` in the
collector. This package module imports neither, so each process loads only its own half.
"""
