"""gRPC channel credentials from the sensor's TLS settings."""

from __future__ import annotations

import logging

import grpc

from net_gazer.netaddr import collector_endpoint, collector_targets
from net_gazer.sensor.config import SensorConfig

log = logging.getLogger(__name__)


def channel_credentials(cfg: SensorConfig) -> grpc.ChannelCredentials | None:
    """TLS credentials (with a client certificate for mutual TLS), or None for plaintext, which
    warns when a token would cross a network in the clear."""
    if not cfg.tls:
        if cfg.token:
            hosts = [
                (collector_endpoint(t) or ("localhost", 0))[0]  # unix: is local
                for t in collector_targets(cfg.collector)
            ]
            if any(host not in ("127.0.0.1", "::1", "localhost") for host in hosts):
                log.warning(
                    "sending the sensor token without TLS to %s: give --tls-ca", cfg.collector
                )
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=cfg.tls_ca.read_bytes() if cfg.tls_ca else None,
        private_key=cfg.tls_key.read_bytes() if cfg.tls_key else None,
        certificate_chain=cfg.tls_cert.read_bytes() if cfg.tls_cert else None,
    )
