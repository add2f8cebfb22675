"""Generated wire protocol, package ``net_gazer.v1``. Do not edit the ``*_pb2*`` files: run
``make proto`` after changing ``wire.proto``."""
